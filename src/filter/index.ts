export * from './path.ts';
export { checkHead, type HeadLimits, type HeadVerdict } from './request-checks.ts';
export { compileRoleIps, type RoleIps } from './role-ips.ts';
