//! Compaction, downsampling and expiry. Every step reads and compresses outside any write
//! transaction, then takes the write lock only to insert the new block and delete what it
//! replaces, so an `append` on another handle waits milliseconds at most. A step that finds its
//! input already gone (another handle maintained at the same time) rolls back and skips.

use std::time::{Duration, Instant};

use rusqlite::{params, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;

use crate::{codec, downsample, ms_from_sql, ms_to_sql, sql, Error, Retention, Store, Tier};

/// What one [`Store::maintain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintainReport {
    /// Rows of `recent` rolled into full-resolution blocks.
    pub samples_compacted: u64,
    pub full_blocks_written: u64,
    /// Full-resolution samples replaced by minute means.
    pub samples_downsampled_to_minute: u64,
    pub minute_samples_written: u64,
    /// Minute samples replaced by hour means.
    pub samples_downsampled_to_hour: u64,
    pub hour_samples_written: u64,
    /// Hour samples older than the hour retention, deleted.
    pub samples_expired: u64,
    /// Steps skipped because another handle changed their input first.
    pub skipped_conflicts: u64,
    pub write_transactions: u64,
    /// The longest any write transaction held the lock, ms.
    pub longest_write_ms: u64,
}

/// A block to write in place of `replaces`.
struct Replacement {
    tier: Tier,
    win_start: i64,
    /// Rows (of `recent` when `from_recent`, else of `blocks`) the block replaces.
    replaces: Vec<i64>,
    from_recent: bool,
    first_ts: i64,
    last_ts: i64,
    samples: i64,
    blob: Vec<u8>,
}

impl Store {
    /// Gives this handle's page cache back to the allocator (SQLite's `shrink_memory`): a
    /// handle kept open between rare rounds of work need not hold its cache in between.
    pub fn release_memory(&self) -> Result<(), Error> {
        self.conn
            .execute_batch("PRAGMA shrink_memory;")
            .map_err(sql(&self.path, "release the page cache"))
    }

    /// Compact closed 10-minute windows of `recent` into blocks, downsample what is older than
    /// `retention.full` to minutes and older than `retention.minute` to hours, and delete hours
    /// older than `retention.hour`. Each block is its own short transaction.
    pub fn maintain(
        &mut self,
        now_unix_ms: u64,
        retention: &Retention,
    ) -> Result<MaintainReport, Error> {
        self.writable("maintain the store")?;
        let mut report = MaintainReport::default();
        self.compact(now_unix_ms, &mut report)?;
        let cutoff = |d: Duration| now_unix_ms.saturating_sub(d.as_millis() as u64);
        self.downsample(Tier::Minute, cutoff(retention.full), &mut report)?;
        self.downsample(Tier::Hour, cutoff(retention.minute), &mut report)?;
        self.expire(cutoff(retention.hour), &mut report)?;
        self.give_back_space(&mut report)?;
        Ok(report)
    }

    /// Roll every closed window of `recent` into one full-resolution block.
    fn compact(&mut self, now: u64, report: &mut MaintainReport) -> Result<(), Error> {
        const DOING: &str = "compact recent samples into a block";
        let win = Tier::Full.block_window_ms() as i64;
        let closed_before = ms_to_sql(now).div_euclid(win) * win;
        let windows: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT DISTINCT ts - (ts % ?1) FROM recent WHERE ts < ?2 ORDER BY 1")
                .map_err(sql(&self.path, DOING))?;
            let rows = stmt
                .query_map(params![win, closed_before], |r| r.get(0))
                .map_err(sql(&self.path, DOING))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql(&self.path, DOING))?
        };
        for start in windows {
            // Each row is decoded and pushed as it is read: the whole window's JSON would be
            // tens of MiB (100 VMs every 2 s), whose freed heap glibc keeps in part afterwards.
            let new_block = |e: std::io::Error| self.decode_err(DOING, "new block", e);
            let mut block = codec::BlockWriter::new(codec::BLOCK_LEVEL).map_err(new_block)?;
            let mut rows: Vec<(i64, i64)> = Vec::new();
            {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT id, ts, fmt, data FROM recent WHERE ts >= ?1 AND ts < ?2
                         ORDER BY ts, id",
                    )
                    .map_err(sql(&self.path, DOING))?;
                let mut found = stmt
                    .query(params![start, start + win])
                    .map_err(sql(&self.path, DOING))?;
                while let Some(r) = found.next().map_err(sql(&self.path, DOING))? {
                    let (id, ts, fmt): (i64, i64, i64) = (
                        r.get(0).map_err(sql(&self.path, DOING))?,
                        r.get(1).map_err(sql(&self.path, DOING))?,
                        r.get(2).map_err(sql(&self.path, DOING))?,
                    );
                    let data = r.get_ref(3).map_err(sql(&self.path, DOING))?;
                    let data = data.as_blob().map_err(|e| {
                        self.decode_err(DOING, &format!("recent sample at {ts} ms"), e)
                    })?;
                    let json = codec::decode_row(fmt, data).map_err(|e| {
                        self.decode_err(DOING, &format!("recent sample at {ts} ms"), e)
                    })?;
                    block.push(&json).map_err(new_block)?;
                    rows.push((id, ts));
                }
            }
            let (Some(&(_, first_ts)), Some(&(_, last_ts))) = (rows.first(), rows.last()) else {
                continue;
            };
            let blob = block.finish().map_err(new_block)?;
            let n = rows.len() as u64;
            let done = self.replace(
                Replacement {
                    tier: Tier::Full,
                    win_start: start,
                    replaces: rows.iter().map(|r| r.0).collect(),
                    from_recent: true,
                    first_ts,
                    last_ts,
                    samples: n as i64,
                    blob,
                },
                report,
            )?;
            if done {
                report.samples_compacted += n;
                report.full_blocks_written += 1;
            }
        }
        Ok(())
    }

    /// Replace blocks of the tier below `to` whose whole `to`-block window ended before
    /// `cutoff` by one `to` block of mean samples.
    fn downsample(
        &mut self,
        to: Tier,
        cutoff: u64,
        report: &mut MaintainReport,
    ) -> Result<(), Error> {
        const DOING: &str = "downsample old samples";
        let from = if to == Tier::Hour {
            Tier::Minute
        } else {
            Tier::Full
        };
        let win = to.block_window_ms() as i64;
        let due_before = ms_to_sql(cutoff).div_euclid(win) * win;
        let groups: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT DISTINCT win_start - (win_start % ?1) FROM blocks
                     WHERE tier = ?2 AND win_start < ?3 ORDER BY 1",
                )
                .map_err(sql(&self.path, DOING))?;
            let rows = stmt
                .query_map(params![win, from as i64, due_before], |r| r.get(0))
                .map_err(sql(&self.path, DOING))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql(&self.path, DOING))?
        };
        for start in groups {
            let blocks: Vec<(i64, i64, Vec<u8>)> = {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT id, fmt, data FROM blocks
                         WHERE tier = ?1 AND win_start >= ?2 AND win_start < ?3",
                    )
                    .map_err(sql(&self.path, DOING))?;
                let rows = stmt
                    .query_map(params![from as i64, start, start + win], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(sql(&self.path, DOING))?;
                rows.collect::<Result<_, _>>()
                    .map_err(sql(&self.path, DOING))?
            };
            let mut samples: Vec<Value> = Vec::new();
            for (id, fmt, data) in &blocks {
                let decoded = codec::decode_block(*fmt, data)
                    .map_err(|e| self.decode_err(DOING, &format!("block {id}"), e))?;
                samples.extend(decoded);
            }
            let means = self.means(&mut samples, to.bucket_ms())?;
            let (Some(first), Some(last)) = (means.first(), means.last()) else {
                continue;
            };
            let (first_ts, last_ts) = (ts_of(first), ts_of(last));
            let jsons: Vec<Vec<u8>> = means
                .iter()
                .map(|v| serde_json::to_vec(v).map_err(|e| self.decode_err(DOING, "mean", e)))
                .collect::<Result<_, _>>()?;
            let blob = codec::compress_block(jsons.iter().map(Vec::as_slice), codec::BLOCK_LEVEL)
                .map_err(|e| self.decode_err(DOING, "new block", e))?;
            let done = self.replace(
                Replacement {
                    tier: to,
                    win_start: start,
                    replaces: blocks.iter().map(|b| b.0).collect(),
                    from_recent: false,
                    first_ts,
                    last_ts,
                    samples: means.len() as i64,
                    blob,
                },
                report,
            )?;
            if done {
                let (inn, out) = (samples.len() as u64, means.len() as u64);
                if to == Tier::Minute {
                    report.samples_downsampled_to_minute += inn;
                    report.minute_samples_written += out;
                } else {
                    report.samples_downsampled_to_hour += inn;
                    report.hour_samples_written += out;
                }
            }
        }
        Ok(())
    }

    /// One mean sample per `bucket_ms` period, oldest first. Each mean must still load as a
    /// `Sample`: a mean that would not is a bug here, and is refused rather than stored.
    fn means(&self, samples: &mut [Value], bucket_ms: u64) -> Result<Vec<Value>, Error> {
        samples.sort_by_key(ts_of);
        let mut out = Vec::new();
        for group in samples.chunk_by(|a, b| bucket(a, bucket_ms) == bucket(b, bucket_ms)) {
            let refs: Vec<&Value> = group.iter().collect();
            if let Some(mean) = downsample::mean(&refs) {
                serde_json::from_value::<memwarden_model::Sample>(mean.clone())
                    .map_err(|e| self.decode_err("downsample old samples", "mean sample", e))?;
                out.push(mean);
            }
        }
        Ok(out)
    }

    /// Delete hour blocks whose window ended before `cutoff`.
    fn expire(&mut self, cutoff: u64, report: &mut MaintainReport) -> Result<(), Error> {
        const DOING: &str = "delete expired samples";
        let t0 = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(&self.path, DOING))?;
        let expired: i64 = tx
            .query_row(
                "SELECT coalesce(sum(samples), 0) FROM blocks WHERE tier = ?1 AND win_end <= ?2",
                params![Tier::Hour as i64, ms_to_sql(cutoff)],
                |r| r.get(0),
            )
            .map_err(sql(&self.path, DOING))?;
        tx.execute(
            "DELETE FROM blocks WHERE tier = ?1 AND win_end <= ?2",
            params![Tier::Hour as i64, ms_to_sql(cutoff)],
        )
        .map_err(sql(&self.path, DOING))?;
        // Events live as long as the coarsest history they sit next to.
        tx.execute(
            "DELETE FROM events WHERE ts <= ?1",
            params![ms_to_sql(cutoff)],
        )
        .map_err(sql(&self.path, DOING))?;
        tx.commit().map_err(sql(&self.path, DOING))?;
        report.samples_expired += ms_from_sql(expired);
        note_write(report, t0);
        Ok(())
    }

    /// Return freed pages to the file system in small steps, then checkpoint the WAL.
    fn give_back_space(&mut self, report: &mut MaintainReport) -> Result<(), Error> {
        const DOING: &str = "return free pages to the file system";
        loop {
            let free: i64 = self
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .map_err(sql(&self.path, DOING))?;
            if free == 0 {
                break;
            }
            let t0 = Instant::now();
            // 256 pages (1 MiB at 4 KiB pages) per transaction keeps each lock short.
            self.conn
                .execute_batch("PRAGMA incremental_vacuum(256)")
                .map_err(sql(&self.path, DOING))?;
            note_write(report, t0);
            let after: i64 = self
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .map_err(sql(&self.path, DOING))?;
            if after >= free {
                break; // auto_vacuum is off in this file (created elsewhere): nothing to do
            }
        }
        // PASSIVE never waits for readers or writers.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(sql(&self.path, "checkpoint the WAL"))
    }

    /// Insert `r`'s block and delete the rows it replaces, in one short transaction. Returns
    /// false (and writes nothing) when some of those rows are already gone.
    fn replace(&mut self, r: Replacement, report: &mut MaintainReport) -> Result<bool, Error> {
        const DOING: &str = "write a block and delete what it replaces";
        let t0 = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(&self.path, DOING))?;
        let delete = if r.from_recent {
            "DELETE FROM recent WHERE id = ?1"
        } else {
            "DELETE FROM blocks WHERE id = ?1"
        };
        {
            let mut stmt = tx.prepare_cached(delete).map_err(sql(&self.path, DOING))?;
            for id in &r.replaces {
                if stmt.execute([id]).map_err(sql(&self.path, DOING))? != 1 {
                    drop(stmt);
                    tx.rollback().map_err(sql(&self.path, DOING))?;
                    report.skipped_conflicts += 1;
                    note_write(report, t0);
                    return Ok(false);
                }
            }
        }
        let win = r.tier.block_window_ms() as i64;
        tx.execute(
            "INSERT INTO blocks (tier, win_start, win_end, first_ts, last_ts, samples, fmt, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                r.tier as i64,
                r.win_start,
                r.win_start + win,
                r.first_ts,
                r.last_ts,
                r.samples,
                codec::FORMAT_ZSTD_JSON,
                r.blob
            ],
        )
        .map_err(sql(&self.path, DOING))?;
        tx.commit().map_err(sql(&self.path, DOING))?;
        note_write(report, t0);
        Ok(true)
    }
}

fn note_write(report: &mut MaintainReport, t0: Instant) {
    report.write_transactions += 1;
    report.longest_write_ms = report.longest_write_ms.max(t0.elapsed().as_millis() as u64);
}

fn ts_of(v: &Value) -> i64 {
    v.get("taken_at_unix_ms")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn bucket(v: &Value, bucket_ms: u64) -> i64 {
    ts_of(v).div_euclid(bucket_ms as i64)
}
