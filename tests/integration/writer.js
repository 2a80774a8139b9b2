// Ground-truth writer on the `libsql` npm package (Turso's engine); same
// table, payloads and log lines as writer.py: "<id> <ms before> <ms after>".
const Database = require('libsql');
const fs = require('fs');
const [db_path, log_path, count_text, delay_text, start_text] = process.argv.slice(2);
const count = parseInt(count_text || '200', 10);
const delay_ms = parseFloat(delay_text || '10');
const start = parseInt(start_text || '1', 10);

function payload(i) {
  const h = (BigInt(i) * 2654435761n) % 4294967296n;
  return `row-${i}-${h.toString(16).padStart(8, '0')}`;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

(async () => {
  const db = new Database(db_path);
  db.exec('PRAGMA journal_mode=WAL');
  db.exec('PRAGMA busy_timeout=30000');
  db.exec('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)');
  const insert = db.prepare('INSERT INTO t(id, payload, big) VALUES (?, ?, NULL)');
  const log = fs.openSync(log_path, 'a');
  for (let i = start; i < start + count; i++) {
    const t0 = Date.now();
    db.exec('BEGIN');
    insert.run(i, payload(i));
    db.exec('COMMIT');
    const t1 = Date.now();
    fs.writeSync(log, `${i} ${t0} ${t1}\n`);
    await sleep(delay_ms);
  }
  db.close();
})();
