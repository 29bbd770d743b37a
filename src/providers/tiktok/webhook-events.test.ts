import { describe, expect, it } from 'vitest';
import { decodeTiktokWebhook, MalformedWebhook, readEnvelope } from './webhook-events.js';

const BIZ = 'biz-1';
const envelope = (event: string, content: Record<string, unknown>) =>
  ({ client_key: 'app', event, create_time: 1700000000, user_openid: BIZ, content: JSON.stringify(content) });
const common = {
  message_id: 'm1', conversation_id: 'c+1==', timestamp: 1700000000123, from: 'alice', to: 'shop',
  from_user: { id: 'u1', role: 'personal_account' }, to_user: { id: BIZ, role: 'business_account' }, unique_identifier: 'u1', is_follower: true,
};

describe('TikTok webhook decoding', () => {
  it('collapses retries by message id, and hashes events without one', () => {
    const a = readEnvelope(Buffer.from(JSON.stringify(envelope('im_receive_msg', { ...common, type: 'text', text: { body: 'hi' } }))));
    expect(a.meta).toEqual({ eventType: 'im_receive_msg', businessId: BIZ, dedupeKey: 'im_receive_msg:m1', providerMessageId: 'm1' });
    const read = readEnvelope(Buffer.from(JSON.stringify(envelope('im_mark_read_msg', { conversation_id: 'c', read: { last_read_timestamp: 1 } }))));
    expect(read.meta.dedupeKey).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(() => readEnvelope(Buffer.from('{"event":'))).toThrow(MalformedWebhook);
    expect(() => readEnvelope(Buffer.from('[1,2]'))).toThrow(MalformedWebhook);
  });

  it('reads every field as the type it should have: numbers as text, anything else as absent', () => {
    const decode = (over: Record<string, unknown>, event = 'im_receive_msg') => decodeTiktokWebhook(envelope(event, { ...common, type: 'text', text: { body: 'hi' }, ...over }))[0] as any;
    expect(decode({ text: { body: 42 } }).message.text).toBe('42');
    expect(decode({ text: 'flat' }).message.text).toBe('');
    expect(decode({ conversation_id: 12345 }).conversationId).toBe('12345');
    expect(decode({ from: { name: 'x' } }).customer.username).toBeNull();
    expect(decode({ is_follower: 'yes' }).customer.isFollower).toBeNull();
    for (const timestamp of ['soon', -5, 1e20, 1.5, null]) {
      const t = decode({ timestamp }).message.timestampMs;
      expect(Number.isSafeInteger(t) && t > 0, String(timestamp)).toBe(true);
    }
    expect(decode({ timestamp: '1700000000999' }).message.timestampMs).toBe(1700000000999);
    expect(decode({ type: 'image', image: { media_id: 7 } }).message.media).toEqual({ providerMediaId: '7', kind: 'image' });
    expect(decode({ type: 'image', image: 'x' }).message.media).toBeNull();
    expect(decode({ message_id: { id: 1 } })).toMatchObject({ kind: 'ignored' });
    expect(decode({ read: { last_read_timestamp: 'x' } }, 'im_mark_read_msg')).toMatchObject({ kind: 'ignored' });
    expect(decode({ referral: 'x' }, 'im_referral_msg')).toMatchObject({ kind: 'ignored' });
    expect(decodeTiktokWebhook({ ...envelope('im_receive_msg', common), user_openid: { id: 1 } as never })[0]).toMatchObject({ kind: 'ignored', businessId: null });
    // An unsupported type keeps its payload as TikTok sent it.
    expect(decode({ type: 'voice', voice: { duration: 3, url: 'https://x/v' } }).message.extra.unsupported.payload).toEqual({ duration: 3, url: 'https://x/v' });
  });

  it('tells customer messages from business echoes by the business id, and API echoes from app replies', () => {
    const [inbound] = decodeTiktokWebhook(envelope('im_receive_msg', { ...common, type: 'text', text: { body: 'size M?' } }));
    expect(inbound).toMatchObject({ kind: 'customer_message', conversationId: 'c+1==', customer: { externalId: 'u1', username: 'alice', isFollower: true }, message: { type: 'text', text: 'size M?', timestampMs: 1700000000123 } });
    const echo = { ...common, from: 'shop', to: 'alice', from_user: { id: BIZ, role: 'business_account' }, to_user: { id: 'u1', role: 'personal_account' } };
    expect(decodeTiktokWebhook(envelope('im_send_msg', { ...echo, type: 'text', text: { body: 'ok' }, message_tag: { source: 'API' } }))[0]).toMatchObject({ kind: 'business_message', origin: 'api', customer: { externalId: 'u1', username: 'alice' } });
    expect(decodeTiktokWebhook(envelope('im_send_msg', { ...echo, type: 'text', text: { body: 'ok' }, message_tag: { source: 'APP' } }))[0]).toMatchObject({ kind: 'business_message', origin: 'app' });
  });

  it('keeps unsupported types with a fallback, and maps media, referrals, reads and EEA notices', () => {
    const [sticker] = decodeTiktokWebhook(envelope('im_receive_msg', { ...common, type: 'sticker', sticker: { url: 'https://x/s.png' } }));
    expect(sticker).toMatchObject({ message: { type: 'unsupported', extra: { unsupported: { original_type: 'sticker', link: 'https://x/s.png' } } } });
    expect((sticker as { message: { text: string } }).message.text).toMatch(/sticker/);
    expect(decodeTiktokWebhook(envelope('im_receive_msg', { ...common, type: 'image', image: { media_id: 'md1' } }))[0]).toMatchObject({ message: { type: 'image', media: { providerMediaId: 'md1', kind: 'image' } } });
    const [ref] = decodeTiktokWebhook(envelope('im_referral_msg', { ...common, referral: { source: 'ad', ad: { ad_id: '7', ad_name: 'Live', timestamp: 5 } } }));
    expect(ref).toMatchObject({ kind: 'referral', referral: { source: 'ad', ad: { ad_id: '7', ad_name: 'Live', timestamp: 5 } } });
    expect(decodeTiktokWebhook(envelope('im_mark_read_msg', { ...common, read: { last_read_timestamp: 42 } }))[0]).toMatchObject({ kind: 'read', readUpToMs: 42 });
    expect(decodeTiktokWebhook(envelope('im_receive_msg_eu', { to: 'shop', to_user: { id: BIZ }, timestamp: 99 }))[0]).toEqual({ kind: 'sync_needed', businessId: BIZ, sinceMs: 99 });
    expect(decodeTiktokWebhook(envelope('im_new_thing', {}))[0]).toMatchObject({ kind: 'ignored' });
    expect(decodeTiktokWebhook({ event: 'im_receive_msg', user_openid: BIZ, content: '{not json' })[0]).toMatchObject({ kind: 'ignored', reason: 'content is not JSON' });
  });
});
