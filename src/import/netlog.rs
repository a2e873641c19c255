//! Chromium's NetLog JSON, streamed: `{"constants": {…}, "events": [{…}, …], "polledData": …}`.
//! The constants are read whole (they name every event type, source type, phase and error:
//! Chromium promises no stable numbers, so nothing here uses one); then each event is
//! parsed alone, handed to the assembler and dropped. A file cut off mid-event (a browser
//! that crashed: no closing `]}`) keeps every complete event before the cut.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

use super::assemble::Assembler;
use super::lines::{self, Broke};
use super::raw::{Constants, RawEvent};
use super::stream::{Input, Meter};
use super::{Context, Source};
use crate::session::Event;

/// Reads a NetLog from `input` into `sink`; fills `source`. A file that breaks off after
/// its constants and at least one event is recovered (`source.stopped` says where); one
/// that breaks before is an error.
pub fn read(
    input: &mut Input,
    ctx: &Context,
    source: &mut Source,
    sink: &mut dyn FnMut(Event),
) -> Result<(), String> {
    let mut assembler = Assembler::new(ctx, sink);
    let fast = input.peek().is_ok_and(lines::applies);
    let result = if fast {
        lines::read(input, &mut assembler, source)
    } else {
        streamed(input, &mut assembler)
    };
    let usable = assembler.has_constants() && assembler.records > 0;
    assembler.finish(source);
    match result {
        Ok(()) if assembler_had_nothing(source) => {
            Err("a NetLog without constants or events: nothing to read".into())
        }
        Ok(()) => Ok(()),
        Err(broke) if usable => {
            source.stopped = Some(stopped(&broke, input.offset()));
            Ok(())
        }
        Err(broke) => Err(broke.reason),
    }
}

/// Any layout: serde over the stream, one event at a time.
fn streamed(input: &mut Input, assembler: &mut Assembler) -> Result<(), Broke> {
    let meter = input.meter.clone();
    let mut de = serde_json::Deserializer::from_reader(&mut *input);
    Top {
        assembler,
        meter: &meter,
    }
    .deserialize(&mut de)
    .map_err(|e| Broke::from(&e))
}

fn assembler_had_nothing(source: &Source) -> bool {
    source.records == 0 && source.capture_mode.is_none() && source.browser.is_none()
}

/// Why reading stopped early, for a file that was still recovered.
fn stopped(broke: &Broke, offset: u64) -> String {
    if broke.eof {
        format!("the file ends at byte {offset} before its closing ]}} (the browser stopped mid-capture): read up to the last complete event")
    } else {
        format!(
            "reading stopped at byte {offset}: {}; read up to the last complete event",
            broke.reason
        )
    }
}

/// The top-level object: its keys in any order; `polledData` (a list, a dict or absent)
/// and anything unknown skipped.
struct Top<'a, 'b> {
    assembler: &'a mut Assembler<'b>,
    meter: &'a Meter,
}

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a NetLog object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            self.meter.mark();
            match key.as_str() {
                "constants" => {
                    let constants: Constants = map.next_value()?;
                    self.assembler.constants(constants);
                }
                "events" => map.next_value_seed(Events {
                    assembler: &mut *self.assembler,
                    meter: self.meter,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The `events` list, one event at a time.
struct Events<'a, 'b> {
    assembler: &'a mut Assembler<'b>,
    meter: &'a Meter,
}

impl<'de> DeserializeSeed<'de> for Events<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Events<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of NetLog events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.assembler.has_constants() {
            return Err(de::Error::custom(
                "the events come before the constants that name them",
            ));
        }
        self.meter.mark();
        while let Some(event) = seq.next_element::<RawEvent>()? {
            self.assembler.event(event);
            self.meter.mark();
        }
        Ok(())
    }
}
