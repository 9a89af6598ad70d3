export * from './path.ts';
export { checkHead, hostProblem, overrideMethods, METHOD_OVERRIDES, type HeadLimits, type HeadVerdict } from './request-checks.ts';
export { compileRoleIps, type RoleIps } from './role-ips.ts';
