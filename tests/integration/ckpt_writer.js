// The application beside the sidecar on the `libsql` npm package (Turso's
// engine), for tests/integration/test_beside_app.py: app_writer.py's
// checkpoint part. Commits one row per transaction into t (same payloads
// and log lines as writer.py: "<id> <ms before> <ms after>") and, from the
// same connection, between transactions, runs PRAGMA wal_checkpoint(MODE)
// every 150-300 ms, each call recorded in RESULTS as a JSON line like
// app_writer.py's (mode, phase, start_ms, latency_ms, busy, log,
// checkpointed, wal_size, salt_before, salt_after_next). In the "ship"
// phase (read from PHASE_FILE) each transaction also writes a 256 KiB
// blob. A statement failing with SQLITE_BUSY is recorded in ERRORS and
// the transaction tried again. Stops once STOP_FILE exists.
//
// node ckpt_writer.js DB LOG RESULTS ERRORS PHASE_FILE STOP_FILE MODE BUSY_TIMEOUT_MS START DELAY_MS
const Database = require('libsql');
const crypto = require('crypto');
const fs = require('fs');
const [db_path, log_path, results_path, errors_path, phase_path, stop_path, mode, busy_text, start_text,
       delay_text] = process.argv.slice(2);
const busy_timeout = parseInt(busy_text, 10);
const delay_ms = parseFloat(delay_text || '5');
const SHIP_BYTES = 256 * 1024;

function payload(i) {
  const h = (BigInt(i) * 2654435761n) % 4294967296n;
  return `row-${i}-${h.toString(16).padStart(8, '0')}`;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const is_busy = (e) => e.code === 'SQLITE_BUSY' || /locked|busy/i.test(String(e.message));

function wal_salt1() {
  try {
    const fd = fs.openSync(db_path + '-wal', 'r');
    const header = Buffer.alloc(32);
    const n = fs.readSync(fd, header, 0, 32, 0);
    fs.closeSync(fd);
    return n === 32 ? header.readUInt32BE(16) : -1;
  } catch (e) {
    return -1;
  }
}
function wal_size() {
  try { return fs.statSync(db_path + '-wal').size; } catch (e) { return -1; }
}
function read_phase() {
  try { return fs.readFileSync(phase_path, 'utf8').trim() || 'idle'; } catch (e) { return 'idle'; }
}

(async () => {
  const db = new Database(db_path, { timeout: busy_timeout });
  db.exec(`PRAGMA busy_timeout=${busy_timeout}`);
  db.exec('PRAGMA journal_mode=WAL');
  db.exec('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)');
  const insert = db.prepare('INSERT INTO t(id, payload, big) VALUES (?, ?, ?)');
  const checkpoint = db.prepare(`PRAGMA wal_checkpoint(${mode})`).raw();
  const log = fs.openSync(log_path, 'a');
  const results = fs.openSync(results_path, 'a');
  const errors = fs.openSync(errors_path, 'a');
  let error_count = 0;
  const attempt = (what, fn) => {
    try {
      fn();
      return true;
    } catch (e) {
      if (!is_busy(e)) throw e;
      error_count++;
      fs.writeSync(errors, JSON.stringify({ statement: what, error: String(e.message), ms: Date.now() }) + '\n');
      if (db.inTransaction) db.exec('ROLLBACK');
      return false;
    }
  };
  let next_checkpoint = Date.now() + 150 + Math.random() * 150;
  let pending = null;
  let i = parseInt(start_text || '1', 10);
  for (;;) {
    const phase = read_phase();
    const blob = phase === 'ship' ? crypto.randomBytes(SHIP_BYTES) : null;
    let t0;
    for (;;) {
      t0 = Date.now();
      if (attempt('BEGIN', () => db.exec('BEGIN')) && attempt('INSERT', () => insert.run(i, payload(i), blob))
          && attempt('COMMIT', () => db.exec('COMMIT')))
        break;
      await sleep(1);
    }
    fs.writeSync(log, `${i} ${t0} ${Date.now()}\n`);
    if (pending) {
      pending.salt_after_next = wal_salt1();
      fs.writeSync(results, JSON.stringify(pending) + '\n');
      pending = null;
    }
    if (Date.now() >= next_checkpoint) {
      const salt_before = wal_salt1();
      const start_ms = Date.now();
      const started = process.hrtime.bigint();
      let row, error = null;
      try {
        row = checkpoint.get();
      } catch (e) {
        row = [1, -1, -1];
        error = String(e.message);
      }
      const latency_ms = Number(process.hrtime.bigint() - started) / 1e6;
      pending = { mode, phase, start_ms, latency_ms: Math.round(latency_ms * 1000) / 1000, busy: row[0], log: row[1],
                  checkpointed: row[2], error, wal_size: wal_size(), salt_before };
      next_checkpoint = Date.now() + 150 + Math.random() * 150;
    }
    i++;
    if (fs.existsSync(stop_path)) break;
    await sleep(delay_ms);
  }
  if (pending) {
    pending.salt_after_next = -1;
    fs.writeSync(results, JSON.stringify(pending) + '\n');
  }
  db.close();
  console.log(`# ckpt_writer: ${error_count} busy errors`);
})().catch((e) => { console.error(e); process.exit(1); });
