//! A batch of consumed messages: the sales to write, the rejects to record, and the offsets
//! to commit once both are stored. Pure, so what a batch holds is tested without a broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::message::{Origin, Reject, Sale, parse_sale};

/// Messages consumed since the last commit.
#[derive(Debug, Default)]
pub struct Batch {
    pub sales: Vec<Sale>,
    /// Where each sale came from (same order as `sales`), for a row the database refuses.
    pub origins: Vec<Origin>,
    pub rejects: Vec<Reject>,
    /// Sales of stores not known when they arrived, with the reject each becomes if its
    /// store stays unknown (see [`Batch::resolve_unknown`]).
    pub unknown: Vec<(Sale, Reject)>,
    /// Next offset to commit per (topic, partition): the highest offset seen, plus one.
    pub next_offsets: BTreeMap<(String, i32), i64>,
    /// The lowest offset seen per (topic, partition): with `next_offsets`, the span of
    /// offsets the batch stands for (logged, so a missing row can be traced to a batch).
    pub first_offsets: BTreeMap<(String, i32), i64>,
    messages: usize,
    /// The last topic seen, shared by the origins of its messages.
    topic: Option<Arc<str>>,
}

impl Batch {
    /// Messages in the batch, good and bad.
    pub fn len(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Adds one message: a sale if it parses and its store is `known`, a reject (payload cut
    /// to `payload_limit` bytes) if it does not parse, and a sale set aside if its store is
    /// not known yet.
    pub fn add(
        &mut self,
        source: (&str, i32, i64),
        payload: Option<&[u8]>,
        payload_limit: usize,
        known: &BTreeSet<u32>,
    ) {
        let (topic, partition, offset) = source;
        self.messages += 1;
        let next = self
            .next_offsets
            .entry((topic.to_string(), partition))
            .or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        let first = self
            .first_offsets
            .entry((topic.to_string(), partition))
            .or_insert(offset);
        *first = (*first).min(offset);
        let parsed = match payload {
            Some(bytes) => parse_sale(bytes),
            None => Err("empty message (no payload)".to_string()),
        };
        let reject = |reason: String| {
            let bytes = payload.unwrap_or_default();
            Reject {
                topic: topic.to_string(),
                partition,
                offset,
                payload: bytes[..bytes.len().min(payload_limit)].to_vec(),
                reason,
            }
        };
        match parsed {
            Ok(sale) if known.contains(&sale.row.store) => {
                let topic = match &self.topic {
                    Some(shared) if **shared == *topic => shared.clone(),
                    _ => self.topic.insert(Arc::from(topic)).clone(),
                };
                self.sales.push(sale);
                self.origins.push(Origin {
                    topic,
                    partition,
                    offset,
                });
            }
            Ok(sale) => {
                let reason = format!(
                    "unknown store {}: no sales history (load or produce its history first)",
                    sale.row.store
                );
                self.unknown.push((sale, reject(reason)));
            }
            Err(reason) => self.rejects.push(reject(reason)),
        }
    }

    /// Settles the sales set aside: those whose store `known` now holds are kept, the others
    /// become rejects. Returns how many were rejected.
    pub fn resolve_unknown(&mut self, known: &BTreeSet<u32>) -> usize {
        let mut rejected = 0;
        for (sale, reject) in std::mem::take(&mut self.unknown) {
            if known.contains(&sale.row.store) {
                self.sales.push(sale);
                self.origins.push(Origin {
                    topic: Arc::from(reject.topic.as_str()),
                    partition: reject.partition,
                    offset: reject.offset,
                });
            } else {
                self.rejects.push(reject);
                rejected += 1;
            }
        }
        rejected
    }

    /// The stores of each product the batch brings sales for.
    pub fn stores_by_product(&self) -> BTreeMap<String, BTreeSet<u32>> {
        let mut stores: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for sale in &self.sales {
            stores
                .entry(sale.product.clone())
                .or_default()
                .insert(sale.row.store);
        }
        stores
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::dataset::{SalesRow, StateHoliday};
    use crate::ingest::message::to_json;

    fn message(store: u32) -> Vec<u8> {
        let date = NaiveDate::from_ymd_opt(2015, 7, 31).unwrap();
        to_json(&Sale {
            product: "product_A".to_string(),
            row: SalesRow {
                store,
                day_of_week: 5,
                date,
                sales: 100,
                customers: 10,
                open: true,
                promo: false,
                state_holiday: StateHoliday::None,
                school_holiday: false,
            },
        })
        .into_bytes()
    }

    #[test]
    fn a_batch_sorts_messages_and_tracks_the_offsets_to_commit() {
        let mut batch = Batch::default();
        let known = BTreeSet::from([1, 2]);
        batch.add(("sales", 0, 10), Some(&message(1)), 8, &known);
        batch.add(
            ("sales", 0, 11),
            Some(b"{broken json that is long"),
            8,
            &known,
        );
        batch.add(("sales", 1, 5), Some(&message(2)), 8, &known);
        batch.add(("sales", 0, 9), None, 8, &known);
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.sales.len(), 2);
        let origins: Vec<(&str, i32, i64)> = batch
            .origins
            .iter()
            .map(|origin| (&*origin.topic, origin.partition, origin.offset))
            .collect();
        assert_eq!(origins, [("sales", 0, 10), ("sales", 1, 5)]);
        assert_eq!(batch.rejects.len(), 2);
        assert_eq!(batch.rejects[0].payload, b"{broken ", "cut to the limit");
        assert_eq!(
            (batch.rejects[0].partition, batch.rejects[0].offset),
            (0, 11)
        );
        assert!(batch.rejects[0].reason.starts_with("not JSON"));
        assert_eq!(batch.rejects[1].reason, "empty message (no payload)");
        let offsets: Vec<_> = batch.next_offsets.clone().into_iter().collect();
        assert_eq!(
            offsets,
            [
                (("sales".to_string(), 0), 12),
                (("sales".to_string(), 1), 6)
            ]
        );
    }

    #[test]
    fn unknown_stores_become_rejects_unless_they_turn_out_known() {
        let mut batch = Batch::default();
        let known = BTreeSet::from([1]);
        batch.add(("sales", 0, 1), Some(&message(1)), 4096, &known);
        batch.add(("sales", 0, 2), Some(&message(9999)), 4096, &known);
        batch.add(("sales", 0, 3), Some(&message(7)), 4096, &known);
        assert_eq!((batch.sales.len(), batch.unknown.len()), (1, 2));
        // Store 7's history was loaded meanwhile; store 9999 stays unknown.
        let rejected = batch.resolve_unknown(&BTreeSet::from([1, 7]));
        assert_eq!(rejected, 1);
        assert_eq!(batch.sales.len(), 2);
        assert_eq!(batch.origins.len(), 2);
        assert_eq!((batch.sales[1].row.store, batch.origins[1].offset), (7, 3));
        assert_eq!(batch.rejects[0].offset, 2);
        assert!(batch.rejects[0].reason.starts_with("unknown store 9999"));
        assert_eq!(batch.rejects[0].payload, message(9999));
        assert_eq!(
            batch.stores_by_product(),
            BTreeMap::from([("product_A".to_string(), BTreeSet::from([1, 7]))])
        );
    }
}
