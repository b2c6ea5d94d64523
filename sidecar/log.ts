// The sidecar's structured JSON logger (pino): one JSON object per line on stdout, ISO timestamps,
// `level` as a name so log pipelines need no pino-specific mapping.
//
// Never log prompt, output or matched text (it may be a secret): callers log rule ids, categories,
// routes and trace ids. Errors are logged with `err.message` only when the message is ours (policy
// problems, socket errors), never when it could echo request content.
import { pino, type DestinationStream, type Logger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogOptions {
  level?: LogLevel;
  /** fields on every line (pod name and namespace) */
  base?: Record<string, string | undefined>;
  /** defaults to stdout, written synchronously so nothing is lost at exit */
  destination?: DestinationStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const base = Object.fromEntries(
    Object.entries(opts.base ?? {}).filter(([, v]) => v !== undefined && v !== ''),
  );
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: 'inferguard-sidecar', ...base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
