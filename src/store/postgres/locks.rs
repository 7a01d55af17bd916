//! One order for the rows a batch locks, on servers sharing the database.
//!
//! A batch locks the rows it changes until its commit: each conversation's
//! counter (a room's row, a dialogue's `dialogue_seqs` row), the rooms it
//! joins, leaves or closes, and the devices whose client ids it checks.
//! Two servers' batches touching the same rows in different orders (one
//! writes to room 3 then room 7, the other to 7 then 3) would each hold
//! one the other waits for: a deadlock, which PostgreSQL breaks only after
//! `deadlock_timeout` (1 s by default) by failing one of them, to be tried
//! again. Under load that stalled busy rooms shared by several servers for
//! seconds. So a shared server's batch first locks all of those rows in
//! one order that every server follows: devices, then rooms, then
//! dialogues, each by key. A server alone runs one transaction at a time
//! and skips this.

use super::prepare;
use crate::store::Write;
use postgres::Statement;
use std::collections::{BTreeSet, HashMap};

pub(super) fn lock_in_order(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut HashMap<&'static str, Statement>,
    writes: &[Write],
) -> Result<(), postgres::Error> {
    let mut devices = BTreeSet::new();
    let mut rooms = BTreeSet::new();
    let mut dialogues = BTreeSet::new();
    for write in writes {
        match write {
            Write::RoomMessage { room, origin, .. } => {
                rooms.insert(room.0);
                devices.extend(origin.as_ref().map(|o| o.device.0));
            }
            Write::PrivateMessage {
                sender,
                recipient,
                origin,
                ..
            } => {
                dialogues.insert((sender.0.min(recipient.0), sender.0.max(recipient.0)));
                devices.extend(origin.as_ref().map(|o| o.device.0));
            }
            Write::Join { room, .. } | Write::Leave { room, .. } | Write::Away { room, .. } => {
                rooms.insert(room.0);
            }
            Write::CloseRoom { id, .. } => {
                rooms.insert(id.0);
            }
            Write::RotateDevice { id, .. } | Write::DeleteDevice { id } => {
                devices.insert(id.0);
            }
            _ => {}
        }
    }
    let devices: Vec<i64> = devices.into_iter().collect();
    let rooms: Vec<i64> = rooms.into_iter().collect();
    let (a, b): (Vec<i64>, Vec<i64>) = dialogues.into_iter().unzip();
    if !devices.is_empty() {
        let sql = "SELECT id FROM devices WHERE id = ANY($1) ORDER BY id FOR UPDATE";
        let statement = prepare(tx, prepared, sql)?;
        tx.query(&statement, &[&devices])?;
    }
    if !rooms.is_empty() {
        let sql = "SELECT id FROM rooms WHERE id = ANY($1) ORDER BY id FOR UPDATE";
        let statement = prepare(tx, prepared, sql)?;
        tx.query(&statement, &[&rooms])?;
    }
    if !a.is_empty() {
        // A dialogue's first message makes its counter row: made here, in
        // the same order, so that two servers making it wait in turn.
        let sql = "INSERT INTO dialogue_seqs (a, b, last_seq)
                   SELECT a, b, 0 FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS d(a, b)
                   ORDER BY a, b
                   ON CONFLICT (a, b) DO NOTHING";
        let statement = prepare(tx, prepared, sql)?;
        tx.execute(&statement, &[&a, &b])?;
        let sql = "SELECT a FROM dialogue_seqs
                   WHERE (a, b) IN (SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[]))
                   ORDER BY a, b FOR UPDATE";
        let statement = prepare(tx, prepared, sql)?;
        tx.query(&statement, &[&a, &b])?;
    }
    Ok(())
}
