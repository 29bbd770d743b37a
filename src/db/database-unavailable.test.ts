import { describe, expect, it } from 'vitest';
import { databaseUnavailable } from './database.js';

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

describe('databaseUnavailable', () => {
  it('recognises a database that cannot serve now', () => {
    expect(databaseUnavailable(withCode('terminating connection due to administrator command', '57P01'))).toBe(true);
    expect(databaseUnavailable(withCode('the database system is starting up', '57P03'))).toBe(true);
    expect(databaseUnavailable(withCode('connection failure', '08006'))).toBe(true);
    expect(databaseUnavailable(withCode('sorry, too many clients already', '53300'))).toBe(true);
    expect(databaseUnavailable(withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'))).toBe(true);
    expect(databaseUnavailable(withCode('database is locked', 'SQLITE_BUSY'))).toBe(true);
    expect(databaseUnavailable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(databaseUnavailable(new Error('Client has encountered a connection error and is not queryable'))).toBe(true);
  });

  it('leaves errors of the query itself alone', () => {
    expect(databaseUnavailable(withCode('duplicate key value violates unique constraint', '23505'))).toBe(false);
    expect(databaseUnavailable(withCode('syntax error at or near "selec"', '42601'))).toBe(false);
    expect(databaseUnavailable(withCode('UNIQUE constraint failed: messages.idempotency_key', 'SQLITE_CONSTRAINT_UNIQUE'))).toBe(false);
    expect(databaseUnavailable(new Error('something else'))).toBe(false);
    expect(databaseUnavailable('Connection terminated')).toBe(false);
  });
});
