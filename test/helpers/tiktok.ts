import { createHmac } from 'node:crypto';
import { APP_SECRET } from './gateway.js';

/** Signs a TikTok webhook body the way TikTok documents it, independently of our provider code. */
export function tiktokSignature(body: string, t = Math.floor(Date.now() / 1000), secret = APP_SECRET): string {
  return `t=${t},s=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

export async function postTiktokWebhook(gatewayUrl: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${gatewayUrl}/webhooks/tiktok`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body,
  });
  const text = await res.text();
  let parsed: unknown = text;
  try { parsed = JSON.parse(text); } catch { /* plain */ }
  return { status: res.status, body: parsed };
}

export function imReceiveText(businessId: string, opts: { messageId: string; conversationId: string; text: string; from?: string; userId?: string }): string {
  const content = {
    type: 'text', message_id: opts.messageId, timestamp: Date.now(), conversation_id: opts.conversationId,
    text: { body: opts.text }, from: opts.from ?? 'replay_user', from_user: { id: opts.userId ?? 'replay-user-1', role: 'personal_account' },
    to: 'shop', to_user: { id: businessId, role: 'business_account' }, unique_identifier: opts.userId ?? 'replay-user-1',
    scene_type: 0, is_follower: false, message_tag: { source: 'APP' },
  };
  return JSON.stringify({ client_key: 'test_app', event: 'im_receive_msg', create_time: Math.floor(Date.now() / 1000), user_openid: businessId, content: JSON.stringify(content) });
}
