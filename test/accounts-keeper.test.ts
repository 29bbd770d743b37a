import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, APP_ID, type TestGateway } from './helpers/gateway.js';
import { account, refreshCalls, storedEvents, storedTokens, waitFor } from './helpers/accounts.js';

/**
 * The token keeper against short-lived tokens (4 s at the emulator): idle accounts never lapse,
 * revoked authorizations are noticed without any traffic, transient failures are retried.
 */
describe('token keeper', () => {
  let gw: TestGateway;

  const tokenWorks = async (token: string) => {
    const res = await fetch(`${gw.emulatorUrl}/open_api/v1.3/tt_user/token_info/get/`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ app_id: APP_ID, access_token: token }),
    });
    return ((await res.json()) as { code: number }).code === 0;
  };
  const currentAccessToken = async (id: string) => {
    const row = await gw.server.ctx.database.db.selectFrom('accounts').select('access_token_enc').where('id', '=', id).executeTakeFirstOrThrow();
    return gw.server.ctx.box.open(row.access_token_enc!);
  };

  beforeAll(async () => {
    gw = await startTestGateway({
      emulator: { accessTokenTtlS: 4 },
      env: { DMGATE_TOKEN_REFRESH_AHEAD: '2', DMGATE_TOKEN_CHECK_INTERVAL: '1', DMGATE_BACKFILL_DAYS: '0' },
    });
  });
  afterAll(async () => { await gw?.close(); });

  it('refreshes an idle account in the background, so its token never lapses', async () => {
    const { id } = await gw.connect('idle_shop');
    expect((await account(gw, id)).backfill).toBeNull(); // DMGATE_BACKFILL_DAYS=0: no backfill on connect
    const started = Date.now();
    while (Date.now() - started < 7000) {
      expect(await tokenWorks(await currentAccessToken(id))).toBe(true);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(await refreshCalls(gw, 'idle_shop')).toBeGreaterThanOrEqual(2);
    const acct = await account(gw, id);
    expect(acct.status).toBe('active');
    expect(Date.parse(acct.token_expires_at)).toBeGreaterThan(Date.now());
    expect(gw.logs.text).not.toContain('could not renew');
  });

  it('notices a revoked authorization without any traffic: needs_reauth with its event', async () => {
    const { id } = await gw.connect('gone_shop');
    await gw.control('tokens/revoke', { business: 'gone_shop' });
    const acct = await waitFor('needs_reauth', async () => { const a = await account(gw, id); return a.status === 'needs_reauth' && a; }, 10000);
    expect(acct.status_reason).toMatch(/reconnect/i);
    const events = (await storedEvents(gw, 'account.needs_reauth')).filter((e) => e.account_id === id);
    expect(events).toHaveLength(1);
    expect(events[0].reason).toBe(acct.status_reason);
    // Once is enough: nothing is refreshed for it any more.
    const calls = await refreshCalls(gw, 'gone_shop');
    await new Promise((r) => setTimeout(r, 1500));
    expect(await refreshCalls(gw, 'gone_shop')).toBe(calls);
    // Reconnecting heals it.
    await gw.connect('gone_shop');
    expect((await account(gw, id)).status).toBe('active');
  });

  it('a refresh token past its expiry is needs_reauth without asking TikTok', async () => {
    const { id } = await gw.connect('year_shop');
    const before = await refreshCalls(gw, 'year_shop');
    await gw.server.ctx.database.db.updateTable('accounts').set({ refresh_expires_at: gw.server.ctx.clock() - 1000 }).where('id', '=', id).execute();
    gw.server.ctx.bus.notify('accounts');
    const acct = await waitFor('needs_reauth', async () => { const a = await account(gw, id); return a.status === 'needs_reauth' && a; });
    expect(acct.status_reason).toContain('/connect/tiktok');
    expect(await refreshCalls(gw, 'year_shop')).toBe(before);
  });

  it('retries a refresh that failed for a transient reason, and the account stays active', async () => {
    const { id } = await gw.connect('flaky_shop');
    await gw.control('faults', { endpoint: 'tt_user/oauth2/refresh_token/', code: 50000, times: 1 });
    await waitFor('a failed refresh', async () => gw.logs.text.includes('could not renew'), 10000);
    expect((await account(gw, id)).status).toBe('active');
    const before = await refreshCalls(gw, 'flaky_shop');
    await waitFor('the retried refresh', async () => (await refreshCalls(gw, 'flaky_shop')) > before, 15000);
    expect((await account(gw, id)).status).toBe('active');
    expect(await tokenWorks(await currentAccessToken(id))).toBe(true);
    for (const t of await storedTokens(gw)) expect(gw.logs.text).not.toContain(t);
  }, 30_000);
});
