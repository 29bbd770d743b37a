import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';

/** The inbox route's JavaScript (entry chunk and everything it imports statically), gzipped. */
const BUDGET_BYTES = 250 * 1000;

function inboxBudget(): Plugin {
  return {
    name: 'dmgate-inbox-budget',
    apply: 'build',
    generateBundle(_options, bundle) {
      const entry = Object.values(bundle).find((c) => c.type === 'chunk' && c.isEntry);
      if (!entry || entry.type !== 'chunk') return this.error('no entry chunk');
      const seen = new Set<string>();
      const walk = (name: string) => {
        const chunk = bundle[name];
        if (seen.has(name) || !chunk || chunk.type !== 'chunk') return;
        seen.add(name);
        chunk.imports.forEach(walk);
      };
      walk(entry.fileName);
      let total = 0;
      const rows: string[] = [];
      for (const name of seen) {
        const chunk = bundle[name];
        if (chunk.type !== 'chunk') continue;
        const gz = gzipSync(chunk.code, { level: 9 }).length;
        total += gz;
        rows.push(`  ${name}  ${(chunk.code.length / 1000).toFixed(1)} kB, ${(gz / 1000).toFixed(1)} kB gzipped`);
      }
      const lazy = Object.values(bundle).filter((c) => c.type === 'chunk' && !seen.has(c.fileName))
        .map((c) => `  ${c.fileName} (lazy)  ${(gzipSync(c.type === 'chunk' ? c.code : '').length / 1000).toFixed(1)} kB gzipped`);
      const line = `inbox route JavaScript: ${(total / 1000).toFixed(1)} kB gzipped (budget ${BUDGET_BYTES / 1000} kB)`;
      console.log(['', line, ...rows, ...lazy, ''].join('\n'));
      if (total > BUDGET_BYTES) this.error(`${line}: over budget`);
    },
  };
}

const backend = process.env.DMGATE_DEV_BACKEND ?? 'http://127.0.0.1:3000';
const proxied = ['/v1', '/auth', '/connect', '/sandbox', '/webhooks', '/docs', '/openapi.json', '/healthz', '/readyz'];

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  plugins: [react(), inboxBudget()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    reportCompressedSize: false,
  },
  server: {
    port: 5173,
    proxy: Object.fromEntries(proxied.map((p) => [p, { target: backend, changeOrigin: false }])),
  },
});
