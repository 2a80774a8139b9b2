// Ground-truth writer on Turso's new engine (`@tursodatabase/database`, the
// Rust rewrite of SQLite); same table, payloads and log lines as writer.py:
// "<id> <ms before> <ms after>", one line per committed transaction.
//
//   node turso_writer.mjs DB LOG COUNT DELAY_MS MODE [START]
//
// MODE: "default" (the engine's single-process mode: whole-file locks) or
// "multiprocess" (experimental: ['multiprocess_wal'], shared through
// DB-tshm). COUNT 0: write until SIGTERM. Ids run from START (default 1).
// Prints "open" once the database is open, "error: MESSAGE" and exits 3
// when it cannot be opened. On SIGTERM the writer finishes its transaction,
// closes cleanly and exits. `node turso_writer.mjs DB - count MODE` prints
// the number of rows in t.
//
// Environment:
//   TURSO_PACKAGE=sync     open through @tursodatabase/sync in local mode
//                          (no url: Turso Sync's own build of the engine)
//                          instead of @tursodatabase/database
//   TURSO_PAYLOAD_BYTES=N  each row also gets an N-byte blob in `big`, so
//                          that a transaction spans N/page-size WAL frames
//   TURSO_CHECKPOINT_EVERY=N   after every N commits the writer runs
//                          PRAGMA wal_checkpoint(TURSO_CHECKPOINT_MODE,
//                          default TRUNCATE) and appends one line to
//                          TURSO_CHECKPOINT_LOG: "<id> <ms> ok <busy> <log>
//                          <checkpointed>" (the result row; busy 1: the
//                          checkpoint did not run to its end) or "<id> <ms>
//                          error <message>" when the engine raised
//   TURSO_CHECKPOINT_AFTER_MS=M  the checkpoint runs M ms after the commit
//                          before it (default 0: right after it)
import fs from 'fs';

const [dbPath, logPath, countText, delayText, mode, startText] = process.argv.slice(2);
const packageName = process.env.TURSO_PACKAGE === 'sync' ? '@tursodatabase/sync' : '@tursodatabase/database';
const { connect } = await import(packageName);
const payloadBytes = parseInt(process.env.TURSO_PAYLOAD_BYTES || '0', 10);
const checkpointEvery = parseInt(process.env.TURSO_CHECKPOINT_EVERY || '0', 10);
const checkpointMode = process.env.TURSO_CHECKPOINT_MODE || 'TRUNCATE';
const checkpointLogPath = process.env.TURSO_CHECKPOINT_LOG;
const checkpointAfterMs = parseFloat(process.env.TURSO_CHECKPOINT_AFTER_MS || '0');

function payload(i) {
  const h = (BigInt(i) * 2654435761n) % 4294967296n;
  return `row-${i}-${h.toString(16).padStart(8, '0')}`;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function open(openMode) {
  const options = openMode === 'multiprocess' ? { experimental: ['multiprocess_wal'] } : {};
  try {
    if (packageName === '@tursodatabase/sync')
      return await connect({ path: dbPath, ...options });
    return await connect(dbPath, options);
  } catch (e) {
    console.log(`error: ${e.message}`);
    process.exit(3);
  }
}

async function countRows() {
  const db = await open(delayText);
  const row = await (await db.prepare('SELECT count(*) AS n FROM t')).get();
  console.log(String(row.n));
  await db.close();
}

// Runs the checkpoint and logs its result row (or the engine's error).
async function checkpoint(db, log, id) {
  let line;
  try {
    const rows = await (await db.prepare(`PRAGMA wal_checkpoint(${checkpointMode})`)).all();
    const r = rows[0] || {};
    line = `ok ${r.busy} ${r.log} ${r.checkpointed}`;
  } catch (e) {
    line = `error ${String(e.message).replace(/\s+/g, ' ')}`;
  }
  fs.writeSync(log, `${id} ${Date.now()} ${line}\n`);
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
  const insert = await db.prepare('INSERT INTO t(id, payload, big) VALUES (?, ?, ?)');
  const log = fs.openSync(logPath, 'a');
  const checkpointLog = checkpointEvery ? fs.openSync(checkpointLogPath, 'a') : -1;
  for (let i = start; !stopping && (count === 0 || i < start + count); i++) {
    const big = payloadBytes ? Buffer.alloc(payloadBytes, i % 251) : null;
    const t0 = Date.now();
    await db.exec('BEGIN');
    await insert.run(i, payload(i), big);
    await db.exec('COMMIT');
    const t1 = Date.now();
    fs.writeSync(log, `${i} ${t0} ${t1}\n`);
    if (checkpointEvery && (i - start + 1) % checkpointEvery === 0) {
      if (checkpointAfterMs)
        await sleep(checkpointAfterMs);
      await checkpoint(db, checkpointLog, i);
    }
    await sleep(delayMs);
  }
  fs.closeSync(log);
  if (checkpointLog >= 0)
    fs.closeSync(checkpointLog);
  await db.close();
}

if (logPath === '-' && countText === 'count')
  await countRows();
else
  await write();
