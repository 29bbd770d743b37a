import type { Selectable } from 'kysely';
import { hashPassword } from '../core/crypto.js';
import { ApiError, notFound } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { Database } from '../db/database.js';
import type { UsersTable } from '../db/schema.js';

export type Role = 'admin' | 'agent';
export type UserRow = Selectable<UsersTable>;
export interface NewUser { email: string; role: Role; password: string; name?: string | null }

export const MIN_PASSWORD = 8;
export const MAX_PASSWORD = 1024;

/** Thrown for input a person typed wrong (the CLI prints it, the API answers 400/409). */
export class UserInputError extends Error {
  constructor(message: string, readonly field: string, readonly code: 'invalid_request' | 'conflict' = 'invalid_request') { super(message); }
}

export const normalizeEmail = (email: string) => email.trim().toLowerCase();

export function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD) throw new UserInputError(`the password needs at least ${MIN_PASSWORD} characters`, 'password');
  if (password.length > MAX_PASSWORD) throw new UserInputError(`the password may have at most ${MAX_PASSWORD} characters`, 'password');
}

export async function createUser(database: Database, u: NewUser, nowMs = Date.now()): Promise<{ id: string; email: string; role: string }> {
  const email = normalizeEmail(u.email);
  if (!/^[^@\s]+@[^@\s]+$/.test(email) || email.length > 320) throw new UserInputError(`"${u.email}" is not an email address`, 'email');
  checkPassword(u.password);
  const taken = await database.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
  if (taken) throw new UserInputError(`a user with the email ${email} already exists`, 'email', 'conflict');
  const id = newId('usr', nowMs);
  await database.db.insertInto('users').values({
    id, email, name: u.name?.trim() || null, role: u.role, password_hash: await hashPassword(u.password), created_at: nowMs, disabled_at: null,
  }).execute();
  return { id, email, role: u.role };
}

/** The public shape of a user: never the password hash. */
export function userView(u: UserRow) {
  return {
    id: u.id, email: u.email, name: u.name, role: u.role,
    disabled: u.disabled_at !== null,
    disabled_at: u.disabled_at === null ? null : new Date(u.disabled_at).toISOString(),
    created_at: new Date(u.created_at).toISOString(),
  };
}

export async function getUser(database: Database, id: string): Promise<UserRow> {
  const row = await database.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('user', id);
  return row;
}

export interface UserPatch { name?: string | null; role?: Role; disabled?: boolean; password?: string }

/**
 * Changes a user. Keeps at least one active admin (demoting or disabling the last one is a
 * conflict); disabling or a new password ends the user's sessions (but `keepSessionId`, the
 * session of someone changing their own password).
 */
export async function updateUser(database: Database, id: string, patch: UserPatch, nowMs = Date.now(), keepSessionId?: string): Promise<UserRow> {
  return database.db.transaction().execute(async (tx) => {
    const row = await tx.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('user', id);
    const set: Partial<UserRow> = {};
    if (patch.name !== undefined) set.name = patch.name?.trim() || null;
    if (patch.role !== undefined && patch.role !== row.role) set.role = patch.role;
    if (patch.disabled === true && row.disabled_at === null) set.disabled_at = nowMs;
    if (patch.disabled === false && row.disabled_at !== null) set.disabled_at = null;
    if (patch.password !== undefined) {
      try { checkPassword(patch.password); } catch (err) {
        if (err instanceof UserInputError) throw new ApiError('invalid_request', err.message, { field: 'password' });
        throw err;
      }
      set.password_hash = await hashPassword(patch.password);
    }
    const losesAdmin = row.role === 'admin' && row.disabled_at === null && (set.role === 'agent' || set.disabled_at);
    if (losesAdmin) {
      const admins = await tx.selectFrom('users').select('id').where('role', '=', 'admin').where('disabled_at', 'is', null).where('id', '!=', id).execute();
      if (!admins.length) throw new ApiError('conflict', 'this is the last active admin: make someone else an admin first', { field: set.role ? 'role' : 'disabled' });
    }
    if (Object.keys(set).length) await tx.updateTable('users').set(set).where('id', '=', id).execute();
    if (set.disabled_at || set.password_hash) {
      let del = tx.deleteFrom('sessions').where('user_id', '=', id);
      if (keepSessionId && !set.disabled_at) del = del.where('id', '!=', keepSessionId);
      await del.execute();
    }
    return { ...row, ...set };
  });
}
