export { createForwardListener, type ForwardDeps, type ForwardListener } from './listener.ts';
export { ForwardRules, normaliseHost, type RuleDecision } from './rules.ts';
export type { LookupFn } from './destination.ts';
