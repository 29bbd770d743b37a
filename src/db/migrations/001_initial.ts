import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.js';

/** The whole first schema. Times are epoch ms; JSON is text; booleans are 0/1. */
export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  const blob = dialect === 'postgres' ? 'bytea' : 'blob';
  const serial = (t: string) =>
    dialect === 'postgres' ? sql.raw(`${t} bigserial primary key`) : sql.raw(`${t} integer primary key autoincrement`);

  await db.schema.createTable('accounts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('external_id', 'text', (c) => c.notNull())
    .addColumn('username', 'text').addColumn('display_name', 'text').addColumn('avatar_url', 'text')
    .addColumn('region', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('status_reason', 'text')
    .addColumn('scopes', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('access_token_enc', 'text').addColumn('refresh_token_enc', 'text')
    .addColumn('token_expires_at', big).addColumn('refresh_expires_at', big)
    .addColumn('token_version', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('refresh_lock_until', big)
    .addColumn('backfill', 'text')
    .addColumn('created_at', big, (c) => c.notNull()).addColumn('updated_at', big, (c) => c.notNull())
    .addUniqueConstraint('accounts_provider_external', ['provider', 'external_id'])
    .execute();

  await db.schema.createTable('contacts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('external_id', 'text', (c) => c.notNull())
    .addColumn('username', 'text').addColumn('display_name', 'text').addColumn('avatar_url', 'text')
    .addColumn('is_follower', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('first_referral', 'text')
    .addColumn('attributes', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('notes', 'text')
    .addColumn('created_at', big, (c) => c.notNull()).addColumn('updated_at', big, (c) => c.notNull())
    .addUniqueConstraint('contacts_provider_external', ['provider', 'external_id'])
    .execute();

  await db.schema.createTable('conversations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('account_id', 'text', (c) => c.notNull())
    .addColumn('contact_id', 'text', (c) => c.notNull())
    .addColumn('external_id', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('open'))
    .addColumn('assignee_id', 'text')
    .addColumn('last_inbound_at', big).addColumn('last_outbound_at', big)
    .addColumn('outbound_since_inbound', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('first_unanswered_at', big)
    .addColumn('last_message_at', big)
    .addColumn('last_message_preview', 'text')
    .addColumn('customer_read_at', big)
    .addColumn('referral', 'text')
    .addColumn('image_capability', 'integer').addColumn('image_capability_checked_at', big)
    .addColumn('created_at', big, (c) => c.notNull()).addColumn('updated_at', big, (c) => c.notNull())
    .addUniqueConstraint('conversations_account_external', ['account_id', 'external_id'])
    .execute();
  await db.schema.createIndex('conversations_contact').on('conversations').column('contact_id').execute();
  await db.schema.createIndex('conversations_list').on('conversations').columns(['status', 'last_message_at']).execute();

  await db.schema.createTable('messages')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('conversation_id', 'text', (c) => c.notNull())
    .addColumn('account_id', 'text', (c) => c.notNull())
    .addColumn('direction', 'text', (c) => c.notNull())
    .addColumn('provider_message_id', 'text')
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('text', 'text').addColumn('media', 'text').addColumn('extra', 'text')
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('error', 'text')
    .addColumn('idempotency_key', 'text').addColumn('request_hash', 'text')
    .addColumn('reply_to', 'text').addColumn('sent_by', 'text')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', big)
    .addColumn('counted_in_window', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('provider_timestamp', big)
    .addColumn('created_at', big, (c) => c.notNull()).addColumn('updated_at', big, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('messages_conversation').on('messages').columns(['conversation_id', 'id']).execute();
  await db.schema.createIndex('messages_provider_id').on('messages').columns(['account_id', 'provider_message_id']).unique().execute();
  await db.schema.createIndex('messages_idempotency').on('messages').column('idempotency_key').unique().execute();
  await db.schema.createIndex('messages_queue').on('messages').columns(['status', 'next_attempt_at']).execute();

  await db.schema.createTable('media')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('message_id', 'text').addColumn('account_id', 'text')
    .addColumn('provider_media_id', 'text').addColumn('content_type', 'text')
    .addColumn('size', 'integer')
    .addColumn('data', sql.raw(blob))
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('media_message').on('media').column('message_id').execute();

  await sql`create table inbound_events (
    ${serial('seq')},
    provider text not null,
    dedupe_key text not null,
    event_type text not null,
    business_id text,
    body text not null,
    status text not null,
    attempts integer not null default 0,
    next_attempt_at ${sql.raw(big)} not null default 0,
    error text,
    received_at ${sql.raw(big)} not null,
    processed_at ${sql.raw(big)},
    unique (provider, dedupe_key)
  )`.execute(db);
  await db.schema.createIndex('inbound_events_status').on('inbound_events').columns(['status', 'seq']).execute();
  await db.schema.createIndex('inbound_events_business').on('inbound_events').columns(['business_id', 'status']).execute();

  await sql`create table events (
    ${serial('seq')},
    id text not null unique,
    type text not null,
    account_id text,
    conversation_id text,
    payload text not null,
    created_at ${sql.raw(big)} not null
  )`.execute(db);
  await db.schema.createIndex('events_created').on('events').column('created_at').execute();

  await db.schema.createTable('webhook_endpoints')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('events', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('disabled_reason', 'text')
    .addColumn('ordered', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('secret_enc', 'text', (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull()).addColumn('updated_at', big, (c) => c.notNull())
    .execute();

  await db.schema.createTable('deliveries')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('event_seq', big, (c) => c.notNull())
    .addColumn('endpoint_id', 'text', (c) => c.notNull())
    .addColumn('conversation_id', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', big, (c) => c.notNull())
    .addColumn('locked_until', big)
    .addColumn('last_status_code', 'integer').addColumn('last_error', 'text')
    .addColumn('created_at', big, (c) => c.notNull()).addColumn('updated_at', big, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('deliveries_due').on('deliveries').columns(['status', 'next_attempt_at']).execute();
  await db.schema.createIndex('deliveries_endpoint').on('deliveries').columns(['endpoint_id', 'event_seq']).execute();

  await db.schema.createTable('delivery_attempts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('delivery_id', 'text', (c) => c.notNull())
    .addColumn('endpoint_id', 'text', (c) => c.notNull())
    .addColumn('attempted_at', big, (c) => c.notNull())
    .addColumn('status_code', 'integer')
    .addColumn('latency_ms', 'integer', (c) => c.notNull())
    .addColumn('error', 'text').addColumn('response_body', 'text')
    .execute();
  await db.schema.createIndex('delivery_attempts_endpoint').on('delivery_attempts').columns(['endpoint_id', 'attempted_at']).execute();
  await db.schema.createIndex('delivery_attempts_delivery').on('delivery_attempts').column('delivery_id').execute();

  await db.schema.createTable('api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('key_hash', 'text', (c) => c.notNull().unique())
    .addColumn('key_prefix', 'text', (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('last_used_at', big).addColumn('revoked_at', big)
    .execute();

  await db.schema.createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('email', 'text', (c) => c.notNull().unique())
    .addColumn('name', 'text')
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('password_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('disabled_at', big)
    .execute();

  await db.schema.createTable('sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('csrf_token', 'text', (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('expires_at', big, (c) => c.notNull())
    .execute();

  await db.schema.createTable('oauth_states')
    .addColumn('state_hash', 'text', (c) => c.primaryKey())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('expires_at', big, (c) => c.notNull())
    .addColumn('used_at', big)
    .addColumn('return_to', 'text')
    .execute();

  await db.schema.createTable('leases')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('owner', 'text', (c) => c.notNull())
    .addColumn('expires_at', big, (c) => c.notNull())
    .execute();

  await db.schema.createTable('links')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('account_id', 'text', (c) => c.notNull())
    .addColumn('ref', 'text', (c) => c.notNull())
    .addColumn('prefilled_message', 'text')
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();
}
