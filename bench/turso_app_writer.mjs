// The application of the bench's Turso-engine scenarios (bench/turso.py):
// bench/app_writer.py's writer on Turso's new engine (@tursodatabase/database
// 0.7.2, pinned in tests/integration/package-lock.json and loaded from
// there), opened as a multi-process application opens it:
// connect(path, { experimental: ['multiprocess_wal'] }).
//
//   node bench/turso_app_writer.mjs DB LOG --seconds S --start N --summary FILE
//        [--mode realistic|single] [--update-rows R] [--rate TXN_PER_S]
//        [--checkpoint-every-ms MS] [--checkpoint-modes TRUNCATE,...] [--wait]
//
// Transactions, log lines ("<id> <ms before BEGIN> <ms after COMMIT>",
// written at once), checkpoints and the JSON summary are app_writer.py's:
//   realistic  one row inserted and 20 random rows of 1..R updated
//   single     one row inserted
// --checkpoint-every-ms runs PRAGMA wal_checkpoint(MODE) on the writer's
// connection between transactions and times it; each call is recorded as
// [mode, ms, busy, log, checkpointed] (busy = the result's busy column; a
// call that throws is busy -1). The engine never waits for a reader: a busy
// checkpoint returns at once.
// --wait: print "open" once the database is open, then wait for one line on
// stdin before the timed loop (so a sidecar can attach to the open database
// first). SIGTERM ends the loop after the current transaction.
import fs from 'fs';

const ENGINE = new URL('../tests/integration/node_modules/@tursodatabase/database/dist/promise.js', import.meta.url);

function parseArgs(argv) {
  const a = { mode: 'realistic', updateRows: 0, rate: 0, checkpointEveryMs: 0, checkpointModes: 'TRUNCATE',
              wait: false };
  const names = { '--mode': 'mode', '--seconds': 'seconds', '--start': 'start', '--update-rows': 'updateRows',
                  '--rate': 'rate', '--checkpoint-every-ms': 'checkpointEveryMs',
                  '--checkpoint-modes': 'checkpointModes', '--summary': 'summary' };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--wait') a.wait = true;
    else if (names[argv[i]]) a[names[argv[i]]] = argv[++i];
    else positional.push(argv[i]);
  }
  [a.db, a.log] = positional;
  for (const key of ['seconds', 'start', 'updateRows', 'rate', 'checkpointEveryMs']) a[key] = Number(a[key]);
  if (!a.db || !a.log || !a.summary || !(a.seconds > 0) || !Number.isInteger(a.start)) {
    console.error('usage: turso_app_writer.mjs DB LOG --seconds S --start N --summary FILE [options]');
    process.exit(2);
  }
  if (a.mode === 'realistic' && !(a.updateRows >= 1)) {
    console.error('--mode realistic needs --update-rows');
    process.exit(2);
  }
  return a;
}

function payload(i) {
  const h = (BigInt(i) * 2654435761n) % 4294967296n;
  return `row-${i}-${h.toString(16).padStart(8, '0')}`;
}

function walBytes(db) {
  try {
    return fs.statSync(db + '-wal').size;
  } catch {
    return 0;
  }
}

// A deterministic generator for the rows to update (xorshift32).
function randomRows(seed, rows) {
  let x = (seed >>> 0) || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return 1 + (x % rows);
  };
}

function stdinLine() {
  return new Promise((resolve) => {
    process.stdin.once('data', () => { process.stdin.destroy(); resolve(); });
    process.stdin.once('end', resolve);
  });
}

async function checkpoint(db, mode) {
  const started = performance.now();
  let busy = -1, log = -1, done = -1;
  try {
    const row = (await db.prepare(`PRAGMA wal_checkpoint(${mode})`).all())[0] || {};
    busy = row.busy ?? -1;
    log = row.log ?? -1;
    done = row.checkpointed ?? -1;
  } catch (e) {
    busy = -1;
  }
  return [mode, performance.now() - started, busy, log, done];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const { connect } = await import(ENGINE);
  let db;
  try {
    db = await connect(a.db, { experimental: ['multiprocess_wal'] });
  } catch (e) {
    console.log(`error: ${e.message}`);
    process.exit(3);
  }
  const insert = db.prepare('INSERT INTO t(id, payload) VALUES (?, ?)');
  const update = db.prepare('UPDATE t SET big = randomblob(250) WHERE id = ?');
  const nextRow = randomRows(a.start, a.updateRows || 1);
  const modes = a.checkpointModes.split(',');
  let stopping = false;
  process.on('SIGTERM', () => { stopping = true; });
  if (a.wait) {
    console.log('open');
    await stdinLine();
  }
  const log = fs.openSync(a.log, 'a');
  const checkpoints = [];
  let largestWal = 0;
  const started = Date.now();
  let nextCheckpoint = started + a.checkpointEveryMs;
  let nextWalCheck = started;
  let i = a.start;
  for (;;) {
    const t0 = Date.now();
    await db.exec('BEGIN');
    await insert.run(i, payload(i));
    if (a.mode === 'realistic')
      for (let k = 0; k < 20; k++) await update.run(nextRow());
    await db.exec('COMMIT');
    fs.writeSync(log, `${i} ${t0} ${Date.now()}\n`);
    i++;
    const now = Date.now();
    if (now - started >= a.seconds * 1000 || stopping) break;
    if (now >= nextWalCheck) {
      largestWal = Math.max(largestWal, walBytes(a.db));
      nextWalCheck = now + 100;
    }
    if (a.checkpointEveryMs && now >= nextCheckpoint) {
      checkpoints.push(await checkpoint(db, modes[checkpoints.length % modes.length]));
      nextCheckpoint = Date.now() + a.checkpointEveryMs;
    }
    if (a.rate) {
      const pause = started + ((i - a.start) * 1000) / a.rate - Date.now();
      if (pause > 0) await sleep(pause);
    }
  }
  const seconds = (Date.now() - started) / 1000;
  largestWal = Math.max(largestWal, walBytes(a.db));
  fs.closeSync(log);
  db.close();
  fs.writeFileSync(a.summary, JSON.stringify({ mode: a.mode, transactions: i - a.start, seconds,
                                               largest_wal_bytes: largestWal, checkpoints }));
}

await main();
process.exit(0);
