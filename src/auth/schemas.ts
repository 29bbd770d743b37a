import { Type } from '@sinclair/typebox';
import { NullableScalar, NullableString } from '../http/schemas.js';

/** Route schemas shared by the auth, user and API-key routes. */
export const RoleSchema = Type.Union([Type.Literal('admin'), Type.Literal('agent')]);

export const UserSchema = Type.Object({
  id: Type.String(),
  email: Type.String(),
  name: NullableString(),
  role: RoleSchema,
  disabled: Type.Boolean(),
  disabled_at: NullableScalar('string', { format: 'date-time' }),
  created_at: Type.String({ format: 'date-time' }),
});

export const InboxSettingsSchema = Type.Object({
  response_sla_hours: Type.Integer({ description: 'a customer message unanswered for longer is late (DMGATE_RESPONSE_SLA_HOURS)' }),
  sandbox: Type.Boolean(),
  window_policy: Type.String(),
});

export const SessionSchema = Type.Object({
  user: UserSchema,
  csrf_token: Type.String({ description: 'send it as `x-csrf-token` on every state-changing request' }),
  expires_at: Type.String({ format: 'date-time' }),
  inbox: InboxSettingsSchema,
});

export const ApiKeySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String({ description: 'the first characters of the key, to recognise it' }),
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: NullableScalar('string', { format: 'date-time' }),
  revoked_at: NullableScalar('string', { format: 'date-time' }),
});
