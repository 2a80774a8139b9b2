// A long-lived application with an embedded replica (@libsql/client: a
// local file synced from a sqld primary), driven one command per stdin
// line, answering one JSON line per command (test_sqld_restore.py):
//   insert FROM TO DELAY_MS   rows FROM..TO, each INSERT + sync(); ground truth
//                             "<id> <ms before> <ms after sync>" appended to LOG
//   exec SQL                  runs SQL through the replica (writes go to the primary), then sync()
//   sync                      -> {"ok":true,"sync":{frames_synced, frame_no}} or {"ok":false,"error":..}
//   rows                      -> {"ok":true,"rows":[[id,payload],..]} from the local file
// Usage: node sqld_app.js REPLICA_FILE SYNC_URL LOG
const { createClient } = require('@libsql/client');
const fs = require('fs');
const readline = require('readline');
const [replica_path, sync_url, log_path] = process.argv.slice(2);
function payload(i) {
  const h = (BigInt(i) * 2654435761n) % 4294967296n;
  return `row-${i}-${h.toString(16).padStart(8, '0')}`;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const answer = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
(async () => {
  const client = createClient({ url: `file:${replica_path}`, syncUrl: sync_url });
  await client.execute('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)');
  await client.sync();
  answer({ ok: true, ready: true });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [cmd, ...rest] = line.split(' ');
    try {
      if (cmd === 'insert') {
        const [from, to, delay] = rest.map(Number);
        const log = fs.openSync(log_path, 'a');
        for (let i = from; i <= to; i++) {
          const t0 = Date.now();
          await client.execute({ sql: 'INSERT INTO t(id, payload) VALUES (?, ?)', args: [i, payload(i)] });
          await client.sync();
          fs.writeSync(log, `${i} ${t0} ${Date.now()}\n`);
          await sleep(delay);
        }
        fs.closeSync(log);
        answer({ ok: true });
      } else if (cmd === 'exec') {
        await client.execute(rest.join(' '));
        answer({ ok: true, sync: await client.sync() });
      } else if (cmd === 'sync') {
        answer({ ok: true, sync: await client.sync() });
      } else if (cmd === 'rows') {
        const rs = await client.execute('SELECT id, payload FROM t ORDER BY id');
        answer({ ok: true, rows: rs.rows.map((r) => [Number(r.id), r.payload]) });
      } else {
        answer({ ok: false, error: `unknown command ${cmd}` });
      }
    } catch (e) {
      answer({ ok: false, error: String(e && e.message || e) });
    }
  }
  client.close();
})().catch((e) => { console.error(e); process.exit(1); });
