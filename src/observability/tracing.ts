/**
 * OpenTelemetry export of a span per request (tracing.otlp). Work in progress on branch `otel`:
 * until it lands, a config with tracing.otlp is refused rather than silently not exported.
 */
import type { BrokerConfig } from '../config/index.ts';
import type { RequestTracer } from '../request/index.ts';
import { BrokerError } from '../errors.ts';

export async function otlpTracer(_c: BrokerConfig): Promise<RequestTracer & { close(): Promise<void> }> {
  throw new BrokerError('BRK_ERR_CONFIG_INVALID', 'tracing.otlp: span export is not built yet');
}
