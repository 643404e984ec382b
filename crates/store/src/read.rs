//! Reading history back: the latest sample, a time range at the finest resolution kept, and the
//! store's own figures.

use memwarden_model::Sample;
use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{codec, ms_from_sql, ms_to_sql, sql, Error, Store, Tier};

/// Size and extent of one part of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TierStats {
    /// `recent` (rows not yet compacted), `full`, `minute`, `hour`.
    pub name: String,
    /// Table rows: one per sample in `recent`, one per block otherwise.
    pub rows: u64,
    pub samples: u64,
    /// Compressed bytes of the blobs (the file adds SQLite's page overhead).
    pub blob_bytes: u64,
    pub oldest_unix_ms: Option<u64>,
    pub newest_unix_ms: Option<u64>,
}

/// What [`Store::stats`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// The database file plus its WAL, bytes.
    pub file_bytes: u64,
    /// Of which the WAL (bounded: cut back to 4 MiB after each checkpoint).
    pub wal_bytes: u64,
    /// `recent`, `full`, `minute`, `hour`, in that order.
    pub tiers: Vec<TierStats>,
    pub oldest_unix_ms: Option<u64>,
    pub newest_unix_ms: Option<u64>,
}

impl Store {
    /// The newest sample in the store, at whatever resolution it is kept.
    pub fn latest(&self) -> Result<Option<Sample>, Error> {
        const DOING: &str = "read the latest sample";
        let row: Option<(i64, i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT ts, fmt, data FROM recent ORDER BY ts DESC, id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql(&self.path, DOING))?;
        let block: Option<(i64, i64, i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT id, last_ts, fmt, data FROM blocks ORDER BY last_ts DESC, id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(sql(&self.path, DOING))?;
        let block = match (row, block) {
            (Some((ts, _, _)), Some(b)) if b.1 > ts => b,
            (Some((ts, fmt, data)), _) => {
                return self.decode_sample(DOING, ts, fmt, &data).map(Some)
            }
            (None, Some(b)) => b,
            (None, None) => return Ok(None),
        };
        let (id, _, fmt, data) = block;
        let mut samples: Vec<Sample> = self.decode_samples(DOING, id, fmt, &data)?;
        samples.sort_by_key(|s| s.taken_at_unix_ms);
        Ok(samples.pop())
    }

    /// Events of `kind` in `[since, until]`, oldest first: (time, data).
    pub fn events(
        &self,
        kind: &str,
        since_unix_ms: u64,
        until_unix_ms: u64,
    ) -> Result<Vec<(u64, serde_json::Value)>, Error> {
        self.read_events(kind, since_unix_ms, until_unix_ms, None)
    }

    /// The newest `limit` events of `kind` in the range, oldest first: a bounded read for a
    /// caller that shows the latest (a range can hold a dry run's every cycle).
    pub fn newest_events(
        &self,
        kind: &str,
        since_unix_ms: u64,
        until_unix_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, serde_json::Value)>, Error> {
        self.read_events(kind, since_unix_ms, until_unix_ms, Some(limit))
    }

    fn read_events(
        &self,
        kind: &str,
        since_unix_ms: u64,
        until_unix_ms: u64,
        newest: Option<usize>,
    ) -> Result<Vec<(u64, serde_json::Value)>, Error> {
        const DOING: &str = "read events";
        // Without a limit, -1: SQLite's "no limit".
        let limit = newest.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let order = if newest.is_some() { "DESC" } else { "" };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT ts, data FROM events WHERE kind = ?1 AND ts BETWEEN ?2 AND ?3 \
                 ORDER BY ts {order}, id {order} LIMIT ?4"
            ))
            .map_err(sql(&self.path, DOING))?;
        let rows = stmt
            .query_map(
                params![
                    kind,
                    ms_to_sql(since_unix_ms),
                    ms_to_sql(until_unix_ms),
                    limit
                ],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .map_err(sql(&self.path, DOING))?;
        let mut out = Vec::new();
        for row in rows {
            let (ts, text) = row.map_err(sql(&self.path, DOING))?;
            let v = serde_json::from_str(&text).map_err(|e| self.decode_err(DOING, "event", e))?;
            out.push((ms_from_sql(ts), v));
        }
        if newest.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    /// Samples with `since ≤ taken_at ≤ until`, oldest first, each period at the finest
    /// resolution still kept: a minute or hour sample is left out where a finer block or row
    /// covers its time.
    pub fn range(&self, since_unix_ms: u64, until_unix_ms: u64) -> Result<Vec<Sample>, Error> {
        self.range_as(since_unix_ms, until_unix_ms, |s: &Sample| {
            s.taken_at_unix_ms
        })
    }

    /// [`Store::range`] decoded into `T`, a reader's own view of a sample (its time read by
    /// `at`): a type that names only the fields it needs skips the rest (a host's process
    /// table is most of a sample), which decodes a long window several times faster.
    pub fn range_as<T: DeserializeOwned>(
        &self,
        since_unix_ms: u64,
        until_unix_ms: u64,
        at: impl Fn(&T) -> u64,
    ) -> Result<Vec<T>, Error> {
        let mut out: Vec<(Tier, T)> = Vec::new();
        self.range_tiers(since_unix_ms, until_unix_ms, &at, |tier, s| {
            out.push((tier, s))
        })?;
        out.sort_by_key(|(tier, s)| (at(s), *tier));
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    /// The samples of [`Store::range_as`] handed to `each` one at a time, as they are decoded,
    /// **not in time order** (recent rows, then blocks tier by tier): a reader that folds them
    /// (series, sums) holds what it keeps, never the whole range decoded. Returns how many.
    pub fn range_each<T: DeserializeOwned>(
        &self,
        since_unix_ms: u64,
        until_unix_ms: u64,
        at: impl Fn(&T) -> u64,
        mut each: impl FnMut(T),
    ) -> Result<usize, Error> {
        let mut n = 0;
        self.range_tiers(since_unix_ms, until_unix_ms, &at, |_, s| {
            n += 1;
            each(s)
        })?;
        Ok(n)
    }

    /// Every sample in the range at the finest tier that holds it, with its tier: a coarser
    /// sample whose time a finer tier covers is left out. Finer tiers are read first (recent
    /// rows, then blocks ordered by tier), so what covers a sample is known when it is read.
    fn range_tiers<T: DeserializeOwned>(
        &self,
        since_unix_ms: u64,
        until_unix_ms: u64,
        at: &impl Fn(&T) -> u64,
        mut each: impl FnMut(Tier, T),
    ) -> Result<(), Error> {
        const DOING: &str = "read a time range";
        let (since, until) = (ms_to_sql(since_unix_ms), ms_to_sql(until_unix_ms));
        // Windows each tier covers, to hide coarser samples under finer ones.
        let mut cover: [Vec<(i64, i64)>; 3] = Default::default();

        let full_win = Tier::Full.block_window_ms() as i64;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ts, fmt, data FROM recent WHERE ts >= ?1 AND ts <= ?2")
            .map_err(sql(&self.path, DOING))?;
        let rows = stmt
            .query_map(params![since, until], |r| {
                Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get::<_, Vec<u8>>(2)?))
            })
            .map_err(sql(&self.path, DOING))?;
        for row in rows {
            let (ts, fmt, data) = row.map_err(sql(&self.path, DOING))?;
            let start = ts.div_euclid(full_win) * full_win;
            cover[0].push((start, start + full_win));
            each(Tier::Full, self.decode_sample(DOING, ts, fmt, &data)?);
        }

        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, tier, win_start, win_end, fmt, data FROM blocks
                 WHERE win_end > ?1 AND win_start <= ?2 ORDER BY tier, win_start",
            )
            .map_err(sql(&self.path, DOING))?;
        let blocks = stmt
            .query_map(params![since, until], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                ))
            })
            .map_err(sql(&self.path, DOING))?;
        // The finer tiers' windows are sorted (for `covers`) once, when the first block of a
        // coarser tier is reached.
        let mut sorted_below = 0;
        for block in blocks {
            let (id, tier, start, end, fmt, data) = block.map_err(sql(&self.path, DOING))?;
            let Some(tier) = Tier::from_i64(tier) else {
                continue; // a tier a newer build added: its finer tiers are read instead
            };
            let t = tier as usize;
            while sorted_below < t {
                cover[sorted_below].sort_unstable();
                cover[sorted_below].dedup();
                sorted_below += 1;
            }
            cover[t].push((start, end));
            for s in self.decode_samples(DOING, id, fmt, &data)? {
                let ts = at(&s);
                let hidden = cover[..t].iter().any(|c| covers(c, ms_to_sql(ts)));
                if (since_unix_ms..=until_unix_ms).contains(&ts) && !hidden {
                    each(tier, s);
                }
            }
        }
        Ok(())
    }

    /// File size, and rows, samples and extent of each tier.
    pub fn stats(&self) -> Result<StoreStats, Error> {
        const DOING: &str = "read the store's statistics";
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let wal_bytes = size(&wal_path(&self.path));
        let file_bytes = size(&self.path) + wal_bytes;
        let mut tiers = Vec::new();
        let recent = self
            .conn
            .query_row(
                "SELECT count(*), count(*), coalesce(sum(length(data)), 0), min(ts), max(ts) FROM recent",
                [],
                tier_stats("recent"),
            )
            .map_err(sql(&self.path, DOING))?;
        tiers.push(recent);
        for tier in Tier::ALL {
            let name = format!("{tier:?}").to_lowercase();
            let t = self
                .conn
                .query_row(
                    "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(length(data)), 0),
                            min(first_ts), max(last_ts) FROM blocks WHERE tier = ?1",
                    [tier as i64],
                    tier_stats(&name),
                )
                .map_err(sql(&self.path, DOING))?;
            tiers.push(t);
        }
        let oldest_unix_ms = tiers.iter().filter_map(|t| t.oldest_unix_ms).min();
        let newest_unix_ms = tiers.iter().filter_map(|t| t.newest_unix_ms).max();
        Ok(StoreStats {
            file_bytes,
            wal_bytes,
            tiers,
            oldest_unix_ms,
            newest_unix_ms,
        })
    }

    fn decode_sample<T: DeserializeOwned>(
        &self,
        doing: &'static str,
        ts: i64,
        fmt: i64,
        data: &[u8],
    ) -> Result<T, Error> {
        let what = || format!("recent sample at {ts} ms");
        let json = codec::decode_row(fmt, data).map_err(|e| self.decode_err(doing, &what(), e))?;
        serde_json::from_slice(&json).map_err(|e| self.decode_err(doing, &what(), e))
    }

    fn decode_samples<T: DeserializeOwned>(
        &self,
        doing: &'static str,
        id: i64,
        fmt: i64,
        data: &[u8],
    ) -> Result<Vec<T>, Error> {
        let what = || format!("block {id}");
        if fmt != codec::FORMAT_ZSTD_JSON {
            return Err(self.decode_err(doing, &what(), format!("format {fmt} is unknown")));
        }
        let json = codec::decompress(data).map_err(|e| self.decode_err(doing, &what(), e))?;
        serde_json::from_slice(&json).map_err(|e| self.decode_err(doing, &what(), e))
    }
}

/// Whether one of the sorted windows `[start, end)` holds `ts`.
fn covers(windows: &[(i64, i64)], ts: i64) -> bool {
    // Windows of one tier are aligned and equal-sized: only the last one starting at or before
    // `ts` can hold it.
    let i = windows.partition_point(|(start, _)| *start <= ts);
    i > 0 && ts < windows[i - 1].1
}

fn tier_stats(name: &str) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<TierStats> + '_ {
    move |r| {
        Ok(TierStats {
            name: name.to_owned(),
            rows: ms_from_sql(r.get(0)?),
            samples: ms_from_sql(r.get(1)?),
            blob_bytes: ms_from_sql(r.get(2)?),
            oldest_unix_ms: r.get::<_, Option<i64>>(3)?.map(ms_from_sql),
            newest_unix_ms: r.get::<_, Option<i64>>(4)?.map(ms_from_sql),
        })
    }
}

pub(crate) fn wal_path(db: &std::path::Path) -> std::path::PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    s.into()
}

impl Store {
    /// SQLite's `PRAGMA integrity_check`: the problems found, empty when the file is sound.
    pub fn check_integrity(&self) -> Result<Vec<String>, Error> {
        const DOING: &str = "check the file's integrity";
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(sql(&self.path, DOING))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql(&self.path, DOING))?;
        let lines: Vec<String> = rows
            .collect::<Result<_, _>>()
            .map_err(sql(&self.path, DOING))?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }
}
