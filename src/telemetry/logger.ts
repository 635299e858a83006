import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** JSON logs. Keys, tokens and bodies are redacted wherever they might appear. */
export function createLogger(
  level: string = process.env['TOKENWARDEN_LOG_LEVEL'] ?? 'info',
  destination?: DestinationStream,
): Logger {
  const options = {
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
      ],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
