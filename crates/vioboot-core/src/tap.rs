//! The smoke report in TAP version 13: one line per check as it finishes, a YAML block for each
//! failure, then the plan and vioboot's verdict line.
//!
//! The exact strings here are a stable interface: CI systems and `tests/` match them.

use core::fmt::{self, Write};

/// The line that opens a report.
pub const VERSION_LINE: &str = "TAP version 13";
/// Start of the last line of a report; `PASS` or `FAIL` follows.
pub const VERDICT_PREFIX: &str = "# vioboot verdict: ";

/// Counts checks and writes their lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tap {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Writes a YAML scalar in double quotes, escaping what YAML requires.
fn yaml_str(w: &mut dyn Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            c if c.is_control() => write!(w, "\\x{:02x}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

/// Keeps a description on one line: TAP ends a test line at the newline, and `#` starts a directive.
struct OneLine<'a>(&'a mut dyn Write);

impl Write for OneLine<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            self.0.write_char(match c {
                '\n' | '\r' => ' ',
                '#' => '_',
                c => c,
            })?;
        }
        Ok(())
    }
}

fn one_line(w: &mut dyn Write, s: &str) -> fmt::Result {
    OneLine(w).write_str(s)
}

impl Tap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of test lines written so far.
    pub fn count(&self) -> usize {
        self.passed + self.failed + self.skipped
    }

    pub fn header(&self, w: &mut dyn Write) -> fmt::Result {
        writeln!(w, "{VERSION_LINE}")
    }

    /// A passing check: `ok N - name: detail`.
    pub fn pass(&mut self, w: &mut dyn Write, name: &str, detail: fmt::Arguments) -> fmt::Result {
        self.passed += 1;
        write!(w, "ok {} - {name}: ", self.count())?;
        OneLine(w).write_fmt(detail)?;
        writeln!(w)
    }

    /// A failing check with a YAML diagnostic block naming what was wrong.
    pub fn fail(
        &mut self,
        w: &mut dyn Write,
        name: &str,
        message: &str,
        fields: &[(&str, &str)],
    ) -> fmt::Result {
        self.failed += 1;
        write!(w, "not ok {} - {name}: ", self.count())?;
        one_line(w, message)?;
        writeln!(w)?;
        writeln!(w, "  ---")?;
        write!(w, "  message: ")?;
        yaml_str(w, message)?;
        writeln!(w)?;
        writeln!(w, "  severity: fail")?;
        for (k, v) in fields {
            write!(w, "  {k}: ")?;
            yaml_str(w, v)?;
            writeln!(w)?;
        }
        writeln!(w, "  ...")
    }

    /// A check that does not apply here: `ok N - name # SKIP reason`.
    pub fn skip(&mut self, w: &mut dyn Write, name: &str, reason: &str) -> fmt::Result {
        self.skipped += 1;
        write!(w, "ok {} - {name} # SKIP ", self.count())?;
        one_line(w, reason)?;
        writeln!(w)
    }

    /// The run cannot go on: TAP's bail-out line.
    pub fn bail_out(&self, w: &mut dyn Write, reason: &str) -> fmt::Result {
        write!(w, "Bail out! ")?;
        one_line(w, reason)?;
        writeln!(w)
    }

    pub fn verdict_pass(&self) -> bool {
        self.failed == 0
    }

    /// The plan and the verdict line, which ends every report.
    pub fn finish(&self, w: &mut dyn Write) -> fmt::Result {
        writeln!(w, "1..{}", self.count())?;
        writeln!(
            w,
            "{VERDICT_PREFIX}{} ({} passed, {} failed, {} skipped)",
            if self.verdict_pass() { "PASS" } else { "FAIL" },
            self.passed,
            self.failed,
            self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn a_passing_report() {
        let mut out = String::new();
        let mut t = Tap::new();
        t.header(&mut out).unwrap();
        t.pass(&mut out, "fdt", format_args!("{} memory ranges", 2))
            .unwrap();
        t.skip(&mut out, "pci", "no host bridge").unwrap();
        t.finish(&mut out).unwrap();
        assert_eq!(
            out,
            "TAP version 13\nok 1 - fdt: 2 memory ranges\nok 2 - pci # SKIP no host bridge\n1..2\n\
             # vioboot verdict: PASS (1 passed, 0 failed, 1 skipped)\n"
        );
    }

    #[test]
    fn a_failure_has_a_yaml_block_and_fails_the_verdict() {
        let mut out = String::new();
        let mut t = Tap::new();
        t.fail(
            &mut out,
            "options",
            "unknown option `vioboot.x`\n\"quoted\"",
            &[("at", "bootargs")],
        )
        .unwrap();
        t.finish(&mut out).unwrap();
        assert_eq!(
            out,
            "not ok 1 - options: unknown option `vioboot.x` \"quoted\"\n  ---\n  \
             message: \"unknown option `vioboot.x`\\n\\\"quoted\\\"\"\n  severity: fail\n  at: \"bootargs\"\n  ...\n\
             1..1\n# vioboot verdict: FAIL (0 passed, 1 failed, 0 skipped)\n"
        );
        assert!(!t.verdict_pass());
    }

    #[test]
    fn descriptions_cannot_forge_directives_or_lines() {
        let mut out = String::new();
        let mut t = Tap::new();
        t.pass(&mut out, "x", format_args!("a # SKIP\nok 9 - forged"))
            .unwrap();
        assert_eq!(out, "ok 1 - x: a _ SKIP ok 9 - forged\n");
    }
}
