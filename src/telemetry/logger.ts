import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs. Keys, tokens and bodies are redacted wherever they might appear. */
export function createLogger(level: string = process.env['TOKENWARDEN_LOG_LEVEL'] ?? 'info'): Logger {
  return pino({
    level,
    base: { service: 'tokenwarden' },
    redact: {
      paths: [
        'authorization',
        'headers.authorization',
        '*.headers.authorization',
        'apiKey',
        '*.apiKey',
        'adminToken',
        'body',
        '*.body',
        'redisUrl',
      ],
      censor: '[redacted]',
    },
  });
}
