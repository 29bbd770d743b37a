import type { FastifyInstance } from 'fastify';
import type { AppContext } from './context.js';
import type { ApiKeyVerifier } from './auth/api-keys.js';
import { authenticate } from './http/authenticate.js';
import { tiktokWebhookRoutes } from './ingest/tiktok-webhook-route.js';
import { connectRoutes } from './accounts/connect-routes.js';
import { accountRoutes } from './accounts/routes.js';
import { endpointRoutes } from './webhooks/routes.js';
import { eventRoutes } from './events/routes.js';
import { conversationRoutes } from './messaging/conversation-routes.js';
import { mediaRoutes } from './ingest/media-routes.js';
import { contactRoutes } from './contacts/routes.js';
import { authRoutes } from './auth/routes.js';
import { userRoutes } from './auth/user-routes.js';
import { apiKeyRoutes } from './auth/api-key-routes.js';
import { staticRoutes } from './http/static.js';
import type { RawRoutes } from './http/raw-routes.js';
import { refuseNul } from './http/no-nul.js';

/** Every feature's routes: public ones at the root, the API behind authentication under /v1. */
export async function registerFeatures(app: FastifyInstance, ctx: AppContext, keys: ApiKeyVerifier, raw: RawRoutes): Promise<void> {
  await app.register(tiktokWebhookRoutes(ctx, raw));
  // Requests to our own API carrying U+0000 are refused (http/no-nul.ts); TikTok's webhook is
  // outside, as its data is cleaned instead (providers/tiktok/json.ts), and so is the sandbox's
  // emulator, which stands in for TikTok.
  await app.register(async (api) => {
    api.addHook('preValidation', refuseNul);
    await api.register(connectRoutes(ctx, keys));
    await api.register(authRoutes(ctx));
    await api.register(async (v1) => {
      v1.addHook('onRequest', authenticate(ctx, keys));
      await v1.register(accountRoutes(ctx));
      await v1.register(endpointRoutes(ctx));
      await v1.register(eventRoutes(ctx));
      await v1.register(conversationRoutes(ctx));
      await v1.register(mediaRoutes(ctx));
      await v1.register(contactRoutes(ctx));
      await v1.register(userRoutes(ctx));
      await v1.register(apiKeyRoutes(ctx, keys));
    }, { prefix: '/v1' });
  });
  // The inbox (web/dist) at `/`, with the single-page-app fallback outside the API prefixes.
  await app.register(staticRoutes());
}
