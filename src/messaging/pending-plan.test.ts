import { describe, expect, it } from 'vitest';
import { fileDatabase } from '../../test/helpers/db.js';
import type { Prepared } from '../db/prepared.js';
import { claimQueued } from './committer.js';
import { pendingOf, pendingSince } from './pending-replies.js';

/** SQLite's plans do not depend on table sizes (no ANALYZE here), so they can be checked on an empty store. */
describe('the sender reads and claims pending replies through bounded indexes (SQLite plans)', () => {
  const db = fileDatabase('sqlite');

  const plan = (query: Prepared<object, unknown>) => {
    const text = query.sql(db().db);
    const values = (text.match(/\?/g) ?? []).map(() => null);
    return (db().sqlite!.prepare(`explain query plan ${text}`).all(...values) as { detail: string }[]).map((r) => r.detail);
  };

  it('reads all of an account\'s pending replies through the partial index on pending rows, not every message it had', () => {
    const steps = plan(pendingOf as Prepared<object, unknown>);
    expect(steps.find((s) => s.startsWith('SEARCH m '))).toContain('messages_outbound_pending');
  });

  it('reads the replies accepted since a floor through the account\'s id range', () => {
    const steps = plan(pendingSince as Prepared<object, unknown>);
    expect(steps.find((s) => s.startsWith('SEARCH m '))).toContain('messages_outbound_account');
  });

  it('claims replies by id, not by walking every queued reply through the status index', () => {
    const steps = plan(claimQueued as Prepared<object, unknown>);
    expect(steps.find((s) => s.startsWith('SEARCH messages '))).toContain('sqlite_autoindex_messages_1 (id=?)');
  });
});
