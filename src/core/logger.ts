import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Paths pino censors wherever they appear. Tokens and secrets are also never logged on purpose;
 * this list is the net under that rule, not the rule itself.
 */
const REDACT = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["access-token"]', 'req.headers["tiktok-signature"]',
  'req.headers["x-user"]', 'res.headers["set-cookie"]',
  '*.access_token', '*.refresh_token', '*.client_secret', '*.secret', '*.signing_secret', '*.password',
  '*.accessToken', '*.refreshToken', '*.appSecret', '*.secretKey', '*.token', '*.key',
  'access_token', 'refresh_token', 'client_secret', 'signing_secret', 'password', 'token',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { service: 'dmgate' } }, destination);
}

export type { Logger };
