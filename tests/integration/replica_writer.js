// Embedded-replica writer: @libsql/client with a local replica file synced
// from a sqld primary on 127.0.0.1. Each transaction is written to the
// primary, then sync() pulls it into the local replica file (the file the
// sidecar backs up). Log lines as writer.py: "<id> <ms before> <ms after sync>".
const { createClient } = require('@libsql/client');
const fs = require('fs');
const [replica_path, sync_url, log_path, count_text, delay_text] = process.argv.slice(2);
const count = parseInt(count_text || '100', 10);
const delay_ms = parseFloat(delay_text || '20');
function payload(i) {
  const h = (BigInt(i) * 2654435761n) % 4294967296n;
  return `row-${i}-${h.toString(16).padStart(8, '0')}`;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
(async () => {
  const client = createClient({ url: `file:${replica_path}`, syncUrl: sync_url });
  await client.execute('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)');
  await client.sync();
  if (count === 0) { client.close(); return; }
  const log = fs.openSync(log_path, 'a');
  for (let i = 1; i <= count; i++) {
    const t0 = Date.now();
    await client.execute({ sql: 'INSERT INTO t(id, payload) VALUES (?, ?)', args: [i, payload(i)] });
    await client.sync();
    const t1 = Date.now();
    fs.writeSync(log, `${i} ${t0} ${t1}\n`);
    await sleep(delay_ms);
  }
  client.close();
})().catch((e) => { console.error(e); process.exit(1); });
