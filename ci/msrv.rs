//! Reads `cargo metadata --format-version 1 --all-features` on stdin and checks that every
//! package the library crates (`balloc-core`, `balloc-concurrent`) reach through normal and
//! build dependencies declares a `rust-version` no newer than theirs. Dependencies under the
//! project's own test cfgs (`cfg(balloc_loom)` and the like) are skipped: no user builds them.
//! A package that declares no `rust-version` is listed, not failed. Exit status 1 on a breach.
//!
//! Built with plain `rustc` (no crates), so CI needs nothing beyond the toolchain.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;

const LIBRARIES: [&str; 2] = ["balloc-core", "balloc-concurrent"];

/// A JSON value: just enough of JSON for `cargo metadata`.
#[derive(Debug)]
enum Json {
    Null,
    Bool,
    Num,
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(key).unwrap_or(&Json::Null),
            _ => &Json::Null,
        }
    }
    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            _ => &[],
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s[self.i], c, "JSON: expected '{}' at byte {}", c as char, self.i);
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(m);
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value() else { panic!("JSON: key") };
                    self.eat(b':');
                    m.insert(k, self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b'}' {
                        return Json::Obj(m);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(v);
                }
                loop {
                    v.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b']' {
                        return Json::Arr(v);
                    }
                }
            }
            b'"' => {
                self.i += 1;
                let mut out = Vec::new();
                while self.s[self.i] != b'"' {
                    if self.s[self.i] == b'\\' {
                        self.i += 1;
                        match self.s[self.i] {
                            b'u' => self.i += 4, // not needed for names and versions
                            c => out.push(match c {
                                b'n' => b'\n',
                                b't' => b'\t',
                                other => other,
                            }),
                        }
                    } else {
                        out.push(self.s[self.i]);
                    }
                    self.i += 1;
                }
                self.i += 1;
                Json::Str(String::from_utf8_lossy(&out).into_owned())
            }
            b't' | b'f' => {
                self.i += if self.s[self.i] == b't' { 4 } else { 5 };
                Json::Bool
            }
            b'n' => {
                self.i += 4;
                Json::Null
            }
            _ => {
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                Json::Num
            }
        }
    }
}

/// "1.84" or "1.84.0" as (1, 84, 0).
fn version(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("read stdin");
    let meta = Parser { s: input.as_bytes(), i: 0 }.value();
    // id -> (name, version, rust-version)
    let packages: BTreeMap<&str, (&str, &str, Option<&str>)> = meta
        .get("packages")
        .arr()
        .iter()
        .map(|p| {
            let field = |k| p.get(k).str().unwrap_or("");
            (field("id"), (field("name"), field("version"), p.get("rust_version").str()))
        })
        .collect();
    let roots: Vec<&str> = packages
        .iter()
        .filter(|(_, p)| LIBRARIES.contains(&p.0))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(roots.len(), LIBRARIES.len(), "library crates not found in the metadata");
    let msrv = packages[roots[0]].2.expect("the library crates declare a rust-version");
    let nodes: BTreeMap<&str, &Json> = meta
        .get("resolve")
        .get("nodes")
        .arr()
        .iter()
        .map(|n| (n.get("id").str().unwrap_or(""), n))
        .collect();
    let mut seen = BTreeSet::new();
    let mut stack = roots.clone();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id].get("deps").arr() {
            let used = dep.get("dep_kinds").arr().iter().any(|k| {
                let kind = k.get("kind").str();
                let target = k.get("target").str().unwrap_or("");
                matches!(kind, None | Some("build")) && !target.contains("balloc_")
            });
            if used {
                stack.push(dep.get("pkg").str().expect("a package id"));
            }
        }
    }
    let mut breaches = 0;
    println!("MSRV {msrv}: the library crates' normal and build dependencies");
    for id in &seen {
        let (name, ver, rv) = packages[id];
        let verdict = match rv {
            None => "no rust-version declared",
            Some(v) if version(v) > version(msrv) => {
                breaches += 1;
                "NEWER THAN THE MSRV"
            }
            Some(_) => "ok",
        };
        println!("  {name} {ver}: rust-version {}: {verdict}", rv.unwrap_or("-"));
    }
    if breaches > 0 {
        eprintln!("{breaches} dependencies need a newer Rust than the declared MSRV {msrv}");
        std::process::exit(1);
    }
}
