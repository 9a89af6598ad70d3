export { loadConfig, validateConfig, parseConfigText, parseConfigSource, formatProblem, problemText, locateProblem, type LoadedConfig, type Validation, type Problem, type Locator, type ParsedConfig } from './load.ts';
export { ConfigSchema, type BrokerConfig, type RouteConfig, type IdentityRule, type MatchRule, type BucketConfig, type RoleConfig, type AuthMethod, type JwtConfig, AUTH_METHODS, JWT_ALGORITHMS, IDENTITY_FORMATS, type IdentityFormat, FORWARD_AUTH_METHODS, type ForwardAuthMethod } from './schema.ts';
export { parseDuration, formatDuration } from './duration.ts';
export { parseSize } from './size.ts';
export { settingsOf, type Settings, type BucketNumbers, type ForwardLimitNumbers, type QuotaNumbers } from './compile.ts';
export { isLoopbackAddress, isLoopbackHost } from './loopback.ts';
