// Ground-truth writer on Turso's new engine (`@tursodatabase/database`, the
// Rust rewrite of SQLite); same table, payloads and log lines as writer.py:
// "<id> <ms before> <ms after>", one line per committed transaction.
//
//   node turso_writer.mjs DB LOG COUNT DELAY_MS MODE [START]
//
// MODE: "default" (the engine's single-process mode: whole-file locks) or
// "multiprocess" (experimental: ['multiprocess_wal'], shared through
// DB-tshm). COUNT 0: write until SIGTERM. Prints "open" once the database
// is open, "error: MESSAGE" and exits 3 when it cannot be opened. On
// SIGTERM the writer finishes its transaction, closes cleanly and exits.
// `node turso_writer.mjs DB - count MODE` prints the number of rows in t.
import { connect } from '@tursodatabase/database';
import fs from 'fs';

const [dbPath, logPath, countText, delayText, mode, startText] = process.argv.slice(2);

function payload(i) {
  const h = (BigInt(i) * 2654435761n) % 4294967296n;
  return `row-${i}-${h.toString(16).padStart(8, '0')}`;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function open(openMode) {
  const options = openMode === 'multiprocess' ? { experimental: ['multiprocess_wal'] } : {};
  try {
    return await connect(dbPath, options);
  } catch (e) {
    console.log(`error: ${e.message}`);
    process.exit(3);
  }
}

async function countRows() {
  const db = await open(delayText);
  const row = await db.prepare('SELECT count(*) AS n FROM t').get();
  console.log(String(row.n));
  db.close();
}

async function write() {
  const count = parseInt(countText || '200', 10);
  const delayMs = parseFloat(delayText || '10');
  const start = parseInt(startText || '1', 10);
  let stopping = false;
  process.on('SIGTERM', () => { stopping = true; });
  const db = await open(mode);
  await db.exec('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)');
  console.log('open');
  const insert = db.prepare('INSERT INTO t(id, payload, big) VALUES (?, ?, NULL)');
  const log = fs.openSync(logPath, 'a');
  for (let i = start; !stopping && (count === 0 || i < start + count); i++) {
    const t0 = Date.now();
    await db.exec('BEGIN');
    await insert.run(i, payload(i));
    await db.exec('COMMIT');
    const t1 = Date.now();
    fs.writeSync(log, `${i} ${t0} ${t1}\n`);
    await sleep(delayMs);
  }
  fs.closeSync(log);
  db.close();
}

if (logPath === '-' && countText === 'count')
  await countRows();
else
  await write();
