//! shim-rocksdb: opens a Conduit RocksDB database (one column family per tree) with the crate,
//! version and options Conduit uses, and answers `shim import conduit` over stdin/stdout.
//!
//! Usage: `shim-rocksdb --log-dir LOGDIR [--read-only] [--create] DIR`. The protocol (all lengths u32 big-endian,
//! a "bytes" is a length and that many bytes) is described in docs/rocksdb.md. Every answer
//! starts with a status byte: 0 ok, 1 error (bytes: the message), 2 database in use.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompactionStyle, DBCompressionType,
    DBRecoveryMode, DBWithThreadMode, Direction, IteratorMode, MultiThreaded, Options,
    WriteBatch, WriteOptions,
};

type Db = DBWithThreadMode<MultiThreaded>;

const PROTOCOL: &str = "shim-rocksdb 1";

const OK: u8 = 0;
const ERR: u8 = 1;
const IN_USE: u8 = 2;

/// The options Conduit opens its database and every column family with
/// (src/database/abstraction/rocksdb.rs::db_options), with smaller thread and cache figures: they
/// change nothing on disk.
fn db_options(cache: &Cache, create: bool, log_dir: &Path) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    table.set_block_size(4 * 1024);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_optimize_filters_for_memory(true);

    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts.create_if_missing(create);
    opts.increase_parallelism(2);
    opts.set_max_open_files(512);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    opts.set_compaction_style(DBCompactionStyle::Level);
    opts.set_level_compaction_dynamic_level_bytes(true);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1048576);
    opts.set_keep_log_file_num(100);
    opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    // RocksDB's info LOG goes elsewhere: opening never renames or writes a file of Conduit's
    // before the LOCK is taken (a refused open leaves the database directory as it was).
    opts.set_db_log_dir(log_dir);
    opts
}

struct Conn<R: Read, W: Write> {
    r: R,
    w: W,
}

impl<R: Read, W: Write> Conn<R, W> {
    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.r.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.r.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.u32()? as usize;
        let mut v = vec![0u8; n];
        self.r.read_exact(&mut v)?;
        Ok(v)
    }

    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "name is not UTF-8"))
    }

    fn put_byte(&mut self, b: u8) -> io::Result<()> {
        self.w.write_all(&[b])
    }

    fn put_bytes(&mut self, b: &[u8]) -> io::Result<()> {
        let n = u32::try_from(b.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "value over 4 GiB"))?;
        self.w.write_all(&n.to_be_bytes())?;
        self.w.write_all(b)
    }

    fn error(&mut self, status: u8, msg: &str) -> io::Result<()> {
        self.put_byte(status)?;
        self.put_bytes(msg.as_bytes())?;
        self.w.flush()
    }
}

/// RocksDB's answer when another process holds the database's LOCK file.
fn is_lock_error(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("lock") && (m.contains("temporarily unavailable") || m.contains("no locks available") || m.contains("lock hold"))
}

fn open(dir: &Path, read_only: bool, create: bool, cache: &Cache, log_dir: &Path) -> Result<Db, rocksdb::Error> {
    let opts = db_options(cache, create, log_dir);
    // Every column family must be opened: list them as Conduit does (none yet on a new database).
    let cfs = match Db::list_cf(&opts, dir) {
        Ok(cfs) => cfs,
        Err(e) if create => {
            let _ = e;
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let descs = cfs
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, db_options(cache, create, log_dir)));
    if read_only {
        Db::open_cf_descriptors_read_only(&opts, dir, descs, false)
    } else {
        Db::open_cf_descriptors(&opts, dir, descs)
    }
}

fn main() {
    let mut read_only = false;
    let mut create = false;
    let mut dir = None;
    let mut log_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--log-dir" => log_dir = args.next(),
            "--read-only" => read_only = true,
            "--create" => create = true,
            "--version" => {
                println!("{PROTOCOL}");
                return;
            }
            _ if dir.is_none() && !a.starts_with("--") => dir = Some(a),
            _ => {
                eprintln!("usage: shim-rocksdb --log-dir LOGDIR [--read-only] [--create] DIR");
                std::process::exit(2);
            }
        }
    }
    let (Some(dir), Some(log_dir)) = (dir, log_dir) else {
        eprintln!("usage: shim-rocksdb --log-dir LOGDIR [--read-only] [--create] DIR");
        std::process::exit(2);
    };
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut c = Conn {
        r: BufReader::with_capacity(1 << 16, stdin.lock()),
        w: BufWriter::with_capacity(1 << 16, stdout.lock()),
    };
    if let Err(e) = run(&mut c, Path::new(&dir), read_only, create, Path::new(&log_dir)) {
        if e.kind() != io::ErrorKind::UnexpectedEof {
            eprintln!("shim-rocksdb: {e}");
            std::process::exit(1);
        }
    }
}

fn run<R: Read, W: Write>(c: &mut Conn<R, W>, dir: &Path, read_only: bool, create: bool, log_dir: &Path) -> io::Result<()> {
    let cache = Cache::new_lru_cache(64 << 20);
    let db = match open(dir, read_only, create, &cache, log_dir) {
        Ok(db) => db,
        Err(e) => {
            let msg = e.to_string();
            let status = if is_lock_error(&msg) { IN_USE } else { ERR };
            return c.error(status, &msg);
        }
    };
    c.put_byte(OK)?;
    c.put_bytes(PROTOCOL.as_bytes())?;
    c.w.flush()?;
    loop {
        let op = c.byte()?;
        match op {
            b'c' => {
                let names = Db::list_cf(&db_options(&cache, false, log_dir), dir);
                match names {
                    Ok(names) => {
                        c.put_byte(OK)?;
                        c.w.write_all(&(names.len() as u32).to_be_bytes())?;
                        for n in &names {
                            c.put_bytes(n.as_bytes())?;
                        }
                        c.w.flush()?;
                    }
                    Err(e) => c.error(ERR, &e.to_string())?,
                }
            }
            b'g' => {
                let cf = c.string()?;
                let key = c.bytes()?;
                let Some(h) = db.cf_handle(&cf) else {
                    c.error(ERR, &format!("no column family {cf}"))?;
                    continue;
                };
                match db.get_pinned_cf(&h, &key) {
                    Ok(Some(v)) => {
                        c.put_byte(OK)?;
                        c.put_byte(1)?;
                        c.put_bytes(&v)?;
                        c.w.flush()?;
                    }
                    Ok(None) => {
                        c.put_byte(OK)?;
                        c.put_byte(0)?;
                        c.w.flush()?;
                    }
                    Err(e) => c.error(ERR, &e.to_string())?,
                }
            }
            b's' => {
                let cf = c.string()?;
                let prefix = c.bytes()?;
                let Some(h) = db.cf_handle(&cf) else {
                    c.error(ERR, &format!("no column family {cf}"))?;
                    continue;
                };
                // Rows follow the status as (1, key, value) and end with 0, or with 2 and an error.
                c.put_byte(OK)?;
                for item in db.iterator_cf(&h, IteratorMode::From(&prefix, Direction::Forward)) {
                    match item {
                        Ok((k, v)) => {
                            if !k.starts_with(&prefix) {
                                break;
                            }
                            c.put_byte(1)?;
                            c.put_bytes(&k)?;
                            c.put_bytes(&v)?;
                        }
                        Err(e) => {
                            c.put_byte(2)?;
                            c.put_bytes(e.to_string().as_bytes())?;
                            c.w.flush()?;
                            break;
                        }
                    }
                }
                c.put_byte(0)?;
                c.w.flush()?;
            }
            b'w' => {
                // One write batch, applied atomically and synced: n × ('p' cf key value | 'd' cf key).
                let n = c.u32()?;
                let mut batch = WriteBatch::default();
                let mut bad = None;
                for _ in 0..n {
                    let kind = c.byte()?;
                    let cf = c.string()?;
                    let key = c.bytes()?;
                    let value = if kind == b'p' { Some(c.bytes()?) } else { None };
                    let Some(h) = db.cf_handle(&cf) else {
                        bad.get_or_insert(format!("no column family {cf}"));
                        continue;
                    };
                    match (kind, value) {
                        (b'p', Some(v)) => batch.put_cf(&h, &key, &v),
                        (b'd', None) => batch.delete_cf(&h, &key),
                        _ => {
                            bad.get_or_insert(format!("unknown batch operation {kind}"));
                        }
                    }
                }
                if let Some(msg) = bad {
                    c.error(ERR, &msg)?;
                    continue;
                }
                if read_only {
                    c.error(ERR, "opened read-only")?;
                    continue;
                }
                let mut wo = WriteOptions::default();
                wo.set_sync(true);
                match db.write_opt(batch, &wo) {
                    Ok(()) => {
                        c.put_byte(OK)?;
                        c.w.flush()?;
                    }
                    Err(e) => c.error(ERR, &e.to_string())?,
                }
            }
            b'n' => {
                // Create a column family with Conduit's options (Conduit's open_tree does this).
                let cf = c.string()?;
                if read_only {
                    c.error(ERR, "opened read-only")?;
                    continue;
                }
                if db.cf_handle(&cf).is_some() {
                    c.put_byte(OK)?;
                    c.w.flush()?;
                    continue;
                }
                match db.create_cf(&cf, &db_options(&cache, false, log_dir)) {
                    Ok(()) => {
                        c.put_byte(OK)?;
                        c.w.flush()?;
                    }
                    Err(e) => c.error(ERR, &e.to_string())?,
                }
            }
            b'x' => {
                // Drop a column family (test fixtures: a database missing one of Conduit's trees).
                let cf = c.string()?;
                if read_only {
                    c.error(ERR, "opened read-only")?;
                    continue;
                }
                match db.drop_cf(&cf) {
                    Ok(()) => {
                        c.put_byte(OK)?;
                        c.w.flush()?;
                    }
                    Err(e) => c.error(ERR, &e.to_string())?,
                }
            }
            b'f' => {
                // Flush every column family's memtable to SST files.
                let mut err = None;
                if !read_only {
                    for name in Db::list_cf(&db_options(&cache, false, log_dir), dir).unwrap_or_default() {
                        if let Some(h) = db.cf_handle(&name) {
                            if let Err(e) = db.flush_cf(&h) {
                                err.get_or_insert(e.to_string());
                            }
                        }
                    }
                }
                match err {
                    None => {
                        c.put_byte(OK)?;
                        c.w.flush()?;
                    }
                    Some(e) => c.error(ERR, &e)?,
                }
            }
            b'q' => {
                drop(db);
                c.put_byte(OK)?;
                c.w.flush()?;
                return Ok(());
            }
            other => {
                c.error(ERR, &format!("unknown request {other}"))?;
                return Ok(());
            }
        }
    }
}
