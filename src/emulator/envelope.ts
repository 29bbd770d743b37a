/**
 * TikTok's response envelope and error vocabulary (tiktok-api.md §2.1 and §5). Errors arrive with
 * HTTP 200 and `data: {}`; only routing failures (wrong path, missing trailing slash) are 404s.
 */

export interface Envelope {
  code: number;
  message: string;
  request_id: string;
  data: Record<string, unknown>;
}

/** Default messages. 40104's text is the one observed live; the others paraphrase TikTok's docs. */
export const ERROR_MESSAGES: Record<number, string> = {
  40000: 'Invalid parameters.',
  40001: 'No permission to operate this resource.',
  40002: 'Invalid parameters.',
  40007: 'The object does not exist.',
  40064: 'The message cannot be sent under the messaging rules.',
  40100: 'Requests made too frequently. Please try again later.',
  40101: 'Invalid auth parameters: the app id and secret do not match.',
  40102: 'Access token has expired.',
  40103: 'Refresh token has expired. Please authorize again.',
  40104: 'Access token is null, you should set it in http header with key Access-Token.',
  40105: 'Access token is incorrect or has been revoked.',
  40107: 'Refresh token is invalid.',
  40108: 'Invalid grant_type.',
  40110: 'Auth code is invalid, expired or has been used.',
  40113: 'The app does not exist or has been blocked.',
  40118: 'The app is not allowlisted for this feature.',
  40906: 'The file is empty.',
  40907: 'The file size exceeds the limit (3 MB).',
  40908: 'Unsupported file type. Only JPG and PNG images are accepted.',
  50000: 'System error. Please try again later.',
  50002: 'System error. Please try again later.',
  51065: 'Service temporarily unavailable. Please try again later.',
  60001: 'The system is under maintenance.',
};

/** Thrown by route logic; the route wrapper turns it into an HTTP 200 error envelope. */
export class TikTokError extends Error {
  constructor(readonly code: number, message?: string) {
    super(message ?? ERROR_MESSAGES[code] ?? `Error ${code}.`);
  }
}

/** A 40002 whose message names the field, as TikTok does ("Param conversation_id is invalid."). */
export function invalidParam(field: string, why = 'is invalid'): TikTokError {
  return new TikTokError(40002, `Param ${field} ${why}.`);
}

export function okEnvelope(requestId: string, data: Record<string, unknown>): Envelope {
  return { code: 0, message: 'OK', request_id: requestId, data };
}

export function errorEnvelope(requestId: string, code: number, message?: string): Envelope {
  return { code, message: message ?? ERROR_MESSAGES[code] ?? `Error ${code}.`, request_id: requestId, data: {} };
}
