// A webhook subscriber for the README tour: verifies dmgate's Standard Webhooks signature and
// prints each event. Usage: WEBHOOK_SECRET=whsec_… node examples/sink.mjs [port]
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

const secret = process.env.WEBHOOK_SECRET;
const port = Number(process.argv[2] ?? 4000);
createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    try {
      const event = secret ? new Webhook(secret).verify(body, req.headers) : JSON.parse(body);
      console.log(secret ? 'verified' : 'unverified (set WEBHOOK_SECRET)', JSON.stringify(event, null, 2));
      res.writeHead(200).end('ok');
    } catch (err) {
      console.error('signature check failed:', err.message);
      res.writeHead(400).end('bad signature');
    }
  });
}).listen(port, '127.0.0.1', () => console.log(`sink listening on http://127.0.0.1:${port}/hook`));
