/**
 * Why an account cannot message, and what fixes it: shown as `status_reason`, on the callback
 * page and in the log, because the person reading it has to act on it.
 */

const ADVANCED_ACCESS_FIX = 'Fix: link the TikTok account to TikTok for Business (TT4B) or a Business Center so it has Advanced Access '
  + 'for the Business Messaging API, then reconnect it in dmgate (/connect/tiktok).';

/** TikTok refused the messaging API for this account (40001, 40118: no Advanced Access or not allowlisted). */
export const restrictedReason = (why: string) =>
  `This account cannot use TikTok's messaging API: ${why}. Business Messaging needs a TikTok Business Account with Advanced Access, `
  + `registered outside the EEA, Switzerland and the UK. ${ADVANCED_ACCESS_FIX}`;

/** The account is registered in a region where TikTok does not offer the messaging API. */
export const regionReason = (region: string) =>
  `This account cannot use TikTok's messaging API: it is registered in ${region}, and TikTok does not offer Business Messaging `
  + `to Business Accounts registered in the EEA, Switzerland or the UK (DMGATE_TIKTOK_RESTRICTED_REGIONS). `
  + `Fix: connect a TikTok Business Account registered in another region, with Advanced Access granted through TikTok for Business (TT4B or a Business Center).`;
