//! The boot menu on the console: the entries, a timeout, a number to pick one, `e` to edit its
//! options line. Input comes from the hvterm vty (H_GET_TERM_CHAR).

use crate::hcall::{self, UnitAddress};
use crate::{cprint, cprintln, time};
use alloc::format;
use alloc::string::String;
use vioboot_core::bls::{self, Entry};

/// Shows the menu (and `from`, where the entries live; `places[k]`, where entry `k` lives,
/// when they come from several file systems) and waits up to `timeout` seconds on the vty: a number picks an entry,
/// Enter boots it (or the default), `e` edits the chosen entry's options line. Returns the
/// index to boot and, if edited, the new options.
pub fn menu(
    list: &[Entry],
    default: usize,
    timeout: u32,
    vty: Option<UnitAddress>,
    from: &str,
    places: &[&str],
) -> (usize, Option<String>) {
    cprintln!("# ---- boot menu ----");
    cprintln!("#   entries on {from}");
    let titles = bls::menu_titles(list);
    for (i, e) in list.iter().enumerate() {
        let on = places.get(i).map_or(String::new(), |p| format!(" on {p}"));
        cprintln!(
            "# {} {:>2}) {} [{}]{on}",
            if i == default { '*' } else { ' ' },
            i + 1,
            titles[i],
            e.id
        );
        for u in e.unused() {
            cprintln!("#        ({u})");
        }
    }
    let Some(vty) = vty.filter(|_| timeout > 0) else {
        return (default, None);
    };
    cprintln!("# number + Enter: boot that entry; e: edit its options; Enter: boot");
    cprint!(
        "# boot which entry? (default {} in {timeout} s) ",
        default + 1
    );
    let mut end = time::now_us() + u64::from(timeout) * 1_000_000;
    let mut typed = 0usize;
    let pick = |typed: usize| {
        if typed >= 1 && typed <= list.len() {
            typed - 1
        } else {
            default
        }
    };
    while time::now_us() < end {
        let mut buf = [0u8; 16];
        let n = hcall::get_term_char(vty, &mut buf).unwrap_or(0);
        for &c in &buf[..n] {
            match c {
                b'0'..=b'9' => {
                    typed = typed
                        .saturating_mul(10)
                        .saturating_add(usize::from(c - b'0'));
                    cprint!("{}", c as char);
                    end = u64::MAX;
                }
                b'e' => {
                    let i = pick(typed);
                    cprintln!();
                    return (i, Some(edit_line(vty, &list[i].options)));
                }
                b'\r' | b'\n' => {
                    cprintln!();
                    return (pick(typed), None);
                }
                _ => {}
            }
        }
        time::delay_us(10_000);
    }
    cprintln!();
    (default, None)
}

/// Reads a line on the vty starting from `current` (Backspace deletes, Enter ends).
fn edit_line(vty: UnitAddress, current: &str) -> String {
    let mut line = String::from(current);
    cprint!("# options: {line}");
    loop {
        let mut buf = [0u8; 16];
        let n = hcall::get_term_char(vty, &mut buf).unwrap_or(0);
        for &c in &buf[..n] {
            match c {
                b'\r' | b'\n' => {
                    cprintln!();
                    return line;
                }
                0x08 | 0x7f => {
                    if line.pop().is_some() {
                        cprint!("\x08 \x08");
                    }
                }
                0x20..=0x7e if line.len() < 1024 => {
                    line.push(c as char);
                    cprint!("{}", c as char);
                }
                _ => {}
            }
        }
        time::delay_us(10_000);
    }
}
