// Apiframe's first-party Node SDK, unchanged, pointed at imagedock: the two-line change (base URL
// and key) on the SDK's own example. Run by tests/test_v2_sdk.py with:
//   APIFRAME_SDK   the SDK's folder (a build of @apiframe-ai/sdk)
//   BASE_URL       imagedock's receiver
//   API_KEY        a caller key of IMAGEDOCK_CALLER_KEYS
//   MODELS         JSON: {video, music}: a model of each route the simulator knows
// It uploads a reference image, submits an image (Grok, with that reference), a video and a
// track with a webhook to its own listener, waits for each with `jobs.waitFor`, lists them, and
// checks every webhook with the SDK's `verifyWebhook`. What it saw goes to stdout as JSON.
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const sdk = process.env.APIFRAME_SDK;
const { Apiframe } = await import(pathToFileURL(path.join(sdk, 'dist/index.js')).href);
const { verifyWebhook } = await import(pathToFileURL(path.join(sdk, 'dist/webhooks.js')).href);
const apiKey = process.env.API_KEY;
const models = JSON.parse(process.env.MODELS);

// The webhook listener, as the SDK's README writes one: the raw body, checked, then 204.
const webhooks = [];
const listener = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const verified = verifyWebhook({ apiKey, body, signature: req.headers['x-webhook-signature'] });
    webhooks.push({ verified, event: req.headers['x-webhook-event'], body: JSON.parse(body.toString('utf8')) });
    res.writeHead(verified ? 204 : 401).end();
  });
});
await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
const webhookUrl = `http://127.0.0.1:${listener.address().port}/apiframe/webhook`;

// The only change from Apiframe's own example: the base URL and the key.
const client = new Apiframe({ apiKey, baseUrl: process.env.BASE_URL });

// 1x1 PNG, as `uploads.create` takes an in-memory Buffer.
const png = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);
const upload = await client.uploads.create({ file: png, filename: 'reference.png', contentType: 'image/png' });

const hooks = { webhookUrl, webhookEvents: ['completed', 'failed'] };
const submitted = [
  await client.images.generate(
    {
      model: 'grok-imagine-image',
      prompt: 'a lighthouse in the style of the reference',
      grokImagineParams: { image: upload.url, aspect_ratio: '16:9' },
      ...hooks,
    },
    { idempotencyKey: 'sdk-image-1' },
  ),
  await client.videos.generate({ model: models.video, prompt: 'waves against the lighthouse', ...hooks }),
  await client.music.generate({ model: models.music, prompt: 'a shanty for the keeper', ...hooks }),
];
// The same Idempotency-Key again: the same job, not a second one.
const again = await client.images.generate(
  {
    model: 'grok-imagine-image',
    prompt: 'a lighthouse in the style of the reference',
    grokImagineParams: { image: upload.url, aspect_ratio: '16:9' },
    ...hooks,
  },
  { idempotencyKey: 'sdk-image-1' },
);

const finished = [];
for (const { jobId } of submitted) {
  finished.push(await client.jobs.waitFor(jobId, { intervalMs: 200, maxIntervalMs: 500, timeoutMs: 120_000 }));
}
const listed = await client.jobs.list({ limit: 10 });

// Each job's `completed` webhook follows its landing: wait for all three.
const deadline = Date.now() + 60_000;
while (webhooks.filter((hook) => hook.event === 'completed').length < submitted.length && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 100));
}
listener.close();
process.stdout.write(JSON.stringify({ upload, submitted, again, finished, listed, webhooks }));
