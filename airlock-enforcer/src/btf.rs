//! Minimal BTF reader that resolves kernel struct member offsets at runtime.
//!
//! The enforcer's eBPF programs read a handful of kernel struct fields
//! (`linux_binprm.file`, `file.f_path.dentry`, ...). Their byte offsets differ
//! between kernel builds, so the loader looks them up in the running kernel's
//! BTF (`/sys/kernel/btf/vmlinux`) and hands them to the programs: a small,
//! hand-rolled stand-in for CO-RE relocations.
//!
//! It is hand-written because aya-obj keeps its BTF type accessors
//! crate-private and btf-rs is LGPL while Airlock is Apache-2.0. Only what
//! offset lookups need is kept: every BTF kind is parsed far enough to be
//! skipped, but only structs, unions, ints, pointers and type modifiers are
//! remembered. Little-endian BTF only (we target x86_64).

use std::path::Path;

const VMLINUX_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const BTF_MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// Bounds typedef chains and anonymous-member nesting so that cyclic
/// (malformed) BTF yields an error instead of looping or overflowing the stack.
const MAX_DEPTH: usize = 64;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read BTF from {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(String),
    #[error("BTF has no struct named `{0}`")]
    NoSuchStruct(String),
    #[error(
        "{kind} `{owner}` has no member `{member}` (looked inside anonymous structs and unions too)"
    )]
    NoSuchMember {
        kind: &'static str,
        owner: String,
        member: String,
    },
    #[error("`{path}` is a pointer; member paths do not follow pointers, so `{member}` cannot be looked up")]
    PointerNotFollowed { path: String, member: String },
    #[error("`{path}` is {kind}, not a struct or union, so `{member}` cannot be looked up")]
    NotAStructOrUnion {
        path: String,
        kind: &'static str,
        member: String,
    },
    #[error("`{0}` is a bitfield; only byte-aligned members are supported")]
    Bitfield(String),
    #[error("empty member path for struct `{0}`")]
    EmptyPath(String),
}

fn malformed(message: impl Into<String>) -> BtfError {
    BtfError::Malformed(message.into())
}

/// Parsed BTF type and string sections (little-endian only; x86_64).
pub struct Btf {
    /// Indexed by type id; entry 0 is `void`.
    types: Vec<Type>,
    strings: Vec<u8>,
}

enum Type {
    Void,
    Int {
        bit_offset: u32,
        bits: u32,
    },
    Pointer,
    Composite {
        is_union: bool,
        name_off: u32,
        members: Vec<Member>,
    },
    /// typedef, const, volatile, restrict and type_tag: transparent for layout.
    Modifier {
        target: u32,
    },
    Other {
        kind: u32,
    },
}

struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

/// A member found by name, with its offset relative to the searched composite.
struct FoundMember {
    type_id: u32,
    bit_offset: u64,
    bitfield_size: u32,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    let &[a, b, c, d] = chunk else { return None };
    Some(u32::from_le_bytes([a, b, c, d]))
}

/// Sequential reader over the type section; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let value = read_u32(self.bytes, self.pos)
            .ok_or_else(|| malformed(format!("type section ends mid-type at byte {}", self.pos)))?;
        self.pos += 4;
        Ok(value)
    }

    fn skip(&mut self, len: usize) -> Result<(), BtfError> {
        match self.pos.checked_add(len) {
            Some(end) if end <= self.bytes.len() => {
                self.pos = end;
                Ok(())
            }
            _ => Err(malformed(format!(
                "type section ends mid-type at byte {}",
                self.pos
            ))),
        }
    }
}

/// Returns the `len` bytes at `hdr_len + off`, or an error naming the section.
fn section<'a>(
    bytes: &'a [u8],
    hdr_len: u32,
    off: u32,
    len: u32,
    what: &str,
) -> Result<&'a [u8], BtfError> {
    let start = u64::from(hdr_len) + u64::from(off);
    let end = start + u64::from(len);
    if end > bytes.len() as u64 {
        return Err(malformed(format!(
            "{what} section {start}..{end} lies outside the {}-byte blob",
            bytes.len()
        )));
    }
    // Both bounds are <= bytes.len(), so they fit in usize.
    Ok(&bytes[start as usize..end as usize])
}

impl Type {
    /// Phrase for error messages about descending into a non-composite type.
    fn description(&self) -> &'static str {
        match self {
            Type::Void => "void",
            Type::Int { .. } => "an int",
            Type::Other { kind: KIND_ARRAY } => "an array",
            Type::Other {
                kind: KIND_ENUM | KIND_ENUM64,
            } => "an enum",
            Type::Other { kind: KIND_FWD } => "a forward declaration",
            _ => "a non-composite type",
        }
    }
}

impl Btf {
    /// Reads and parses the running kernel's BTF from `/sys/kernel/btf/vmlinux`.
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        Self::from_path(Path::new(VMLINUX_BTF_PATH))
    }

    fn from_path(path: &Path) -> Result<Btf, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// Parses a raw BTF blob; any malformation is an error, never a panic.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        let header = bytes.get(..HEADER_LEN).ok_or_else(|| {
            malformed(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ))
        })?;
        let magic = u16::from_le_bytes([header[0], header[1]]);
        if magic == BTF_MAGIC.swap_bytes() {
            return Err(malformed("big-endian BTF is not supported"));
        }
        if magic != BTF_MAGIC {
            return Err(malformed(format!(
                "bad magic {magic:#06x}, expected {BTF_MAGIC:#06x}"
            )));
        }
        if header[2] != 1 {
            return Err(malformed(format!("unsupported version {}", header[2])));
        }
        // `header` is exactly HEADER_LEN bytes, so these reads cannot fail.
        let field = |at| read_u32(header, at).unwrap_or_default();
        let hdr_len = field(4);
        if (hdr_len as usize) < HEADER_LEN {
            return Err(malformed(format!(
                "header length {hdr_len} is below {HEADER_LEN}"
            )));
        }
        let type_section = section(bytes, hdr_len, field(8), field(12), "type")?;
        let strings = section(bytes, hdr_len, field(16), field(20), "string")?;
        // Offset 0 must be the empty name and every name must be terminated.
        if strings.first() != Some(&0) || strings.last() != Some(&0) {
            return Err(malformed("string section must start and end with NUL"));
        }
        let types = parse_types(type_section, strings.len())?;
        Ok(Btf {
            types,
            strings: strings.to_vec(),
        })
    }

    /// Byte offset of `path` (member names, outermost first) inside struct or union `root`.
    /// Each step descends into the member's type, resolving typedef/const/volatile/restrict/type_tag;
    /// when a name is not a direct member, anonymous struct/union members are searched (recursively),
    /// adding their offsets. Pointers are NOT followed (a path step after a pointer member is an error).
    pub fn member_offset(&self, root: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut current = self.find_root(root)?;
        if path.is_empty() {
            return Err(BtfError::EmptyPath(root.to_string()));
        }
        let mut walked = root.to_string();
        let mut total_bits: u64 = 0;
        for &name in path {
            let (is_union, members) = match self.resolve(current)? {
                Type::Composite {
                    is_union, members, ..
                } => (*is_union, members),
                Type::Pointer => {
                    return Err(BtfError::PointerNotFollowed {
                        path: walked,
                        member: name.to_string(),
                    })
                }
                other => {
                    return Err(BtfError::NotAStructOrUnion {
                        path: walked,
                        kind: other.description(),
                        member: name.to_string(),
                    })
                }
            };
            let found =
                self.find_member(members, name, 0)?
                    .ok_or_else(|| BtfError::NoSuchMember {
                        kind: if is_union { "union" } else { "struct" },
                        owner: walked.clone(),
                        member: name.to_string(),
                    })?;
            walked.push('.');
            walked.push_str(name);
            // Non-kind_flag BTF encodes bitfields in the member's int type instead.
            let int_bitfield = matches!(
                self.resolve(found.type_id)?,
                Type::Int { bit_offset, bits } if *bit_offset != 0 || bits % 8 != 0
            );
            if found.bitfield_size != 0 || found.bit_offset % 8 != 0 || int_bitfield {
                return Err(BtfError::Bitfield(walked));
            }
            total_bits += found.bit_offset;
            current = found.type_id;
        }
        u32::try_from(total_bits / 8)
            .map_err(|_| malformed(format!("offset of `{walked}` does not fit in 32 bits")))
    }

    fn name(&self, name_off: u32) -> &[u8] {
        let tail = self.strings.get(name_off as usize..).unwrap_or(&[]);
        tail.split(|&byte| byte == 0).next().unwrap_or(&[])
    }

    fn type_by_id(&self, id: u32) -> Result<&Type, BtfError> {
        self.types
            .get(id as usize)
            .ok_or_else(|| malformed(format!("reference to missing type id {id}")))
    }

    /// Prefers a struct/union with members, because forward declarations and
    /// empty duplicates may share the name.
    fn find_root(&self, root: &str) -> Result<u32, BtfError> {
        let mut first_empty = None;
        for (id, ty) in self.types.iter().enumerate() {
            if let Type::Composite {
                name_off, members, ..
            } = ty
            {
                if self.name(*name_off) == root.as_bytes() {
                    if !members.is_empty() {
                        return Ok(id as u32);
                    }
                    first_empty.get_or_insert(id as u32);
                }
            }
        }
        first_empty.ok_or_else(|| BtfError::NoSuchStruct(root.to_string()))
    }

    /// Follows typedef/const/volatile/restrict/type_tag to the underlying type.
    fn resolve(&self, mut id: u32) -> Result<&Type, BtfError> {
        for _ in 0..MAX_DEPTH {
            match self.type_by_id(id)? {
                Type::Modifier { target } => id = *target,
                ty => return Ok(ty),
            }
        }
        Err(malformed(format!(
            "modifier chain longer than {MAX_DEPTH} at type id {id}"
        )))
    }

    fn find_member(
        &self,
        members: &[Member],
        name: &str,
        depth: usize,
    ) -> Result<Option<FoundMember>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(malformed(format!(
                "anonymous members nested deeper than {MAX_DEPTH} (cyclic types?)"
            )));
        }
        let direct = members
            .iter()
            .find(|member| !name.is_empty() && self.name(member.name_off) == name.as_bytes());
        if let Some(member) = direct {
            return Ok(Some(FoundMember {
                type_id: member.type_id,
                bit_offset: u64::from(member.bit_offset),
                bitfield_size: member.bitfield_size,
            }));
        }
        for anonymous in members
            .iter()
            .filter(|member| self.name(member.name_off).is_empty())
        {
            if let Type::Composite { members: inner, .. } = self.resolve(anonymous.type_id)? {
                if let Some(found) = self.find_member(inner, name, depth + 1)? {
                    return Ok(Some(FoundMember {
                        bit_offset: found.bit_offset + u64::from(anonymous.bit_offset),
                        ..found
                    }));
                }
            }
        }
        Ok(None)
    }
}

fn parse_types(section: &[u8], strings_len: usize) -> Result<Vec<Type>, BtfError> {
    let check_name = |name_off: u32, id: usize| {
        if (name_off as usize) < strings_len {
            Ok(())
        } else {
            Err(malformed(format!(
                "type id {id} has name offset {name_off} outside the string section"
            )))
        }
    };
    let mut types = vec![Type::Void];
    let mut reader = Reader {
        bytes: section,
        pos: 0,
    };
    while reader.pos < section.len() {
        let id = types.len();
        let name_off = reader.u32()?;
        let info = reader.u32()?;
        let size_or_type = reader.u32()?;
        check_name(name_off, id)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31 == 1;
        let ty = match kind {
            KIND_INT => {
                let encoding = reader.u32()?;
                Type::Int {
                    bit_offset: (encoding >> 16) & 0xff,
                    bits: encoding & 0xff,
                }
            }
            KIND_PTR => Type::Pointer,
            KIND_STRUCT | KIND_UNION => {
                let mut members = Vec::with_capacity(vlen);
                for _ in 0..vlen {
                    let member_name_off = reader.u32()?;
                    let type_id = reader.u32()?;
                    let offset = reader.u32()?;
                    check_name(member_name_off, id)?;
                    let (bit_offset, bitfield_size) = if kind_flag {
                        (offset & 0xff_ffff, offset >> 24)
                    } else {
                        (offset, 0)
                    };
                    members.push(Member {
                        name_off: member_name_off,
                        type_id,
                        bit_offset,
                        bitfield_size,
                    });
                }
                Type::Composite {
                    is_union: kind == KIND_UNION,
                    name_off,
                    members,
                }
            }
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                Type::Modifier {
                    target: size_or_type,
                }
            }
            _ => {
                let extra = match kind {
                    KIND_ARRAY => 12,
                    KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                    KIND_FWD | KIND_FUNC | KIND_FLOAT => 0,
                    KIND_VAR | KIND_DECL_TAG => 4,
                    KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                    _ => return Err(malformed(format!("unknown kind {kind} at type id {id}"))),
                };
                reader.skip(extra)?;
                Type::Other { kind }
            }
        };
        types.push(ty);
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Assembles a little-endian BTF blob; type ids are handed out in order from 1.
    struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl BtfBuilder {
        fn new() -> Self {
            BtfBuilder {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn push_type(
            &mut self,
            name: &str,
            kind: u32,
            kind_flag: bool,
            vlen: usize,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let name_off = self.string(name);
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen as u32;
            for word in [name_off, info, size_or_type].iter().chain(extra) {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            self.push_type(name, KIND_INT, false, 0, size, &[size * 8])
        }

        fn ptr(&mut self, target: u32) -> u32 {
            self.push_type("", KIND_PTR, false, 0, target, &[])
        }

        fn modifier(&mut self, kind: u32, name: &str, target: u32) -> u32 {
            self.push_type(name, kind, false, 0, target, &[])
        }

        /// `members` are (name, type id, bit offset); kind_flag stays clear.
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let mut extra = Vec::new();
            for &(member, type_id, bit_offset) in members {
                extra.extend([self.string(member), type_id, bit_offset]);
            }
            self.push_type(name, kind, false, members.len(), size, &extra)
        }

        fn build(&self) -> Vec<u8> {
            let mut blob = Vec::new();
            blob.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            blob.extend([1, 0]);
            let types_len = self.types.len() as u32;
            for word in [
                HEADER_LEN as u32,
                0,
                types_len,
                types_len,
                self.strings.len() as u32,
            ] {
                blob.extend_from_slice(&word.to_le_bytes());
            }
            blob.extend_from_slice(&self.types);
            blob.extend_from_slice(&self.strings);
            blob
        }
    }

    /// struct path { void *mnt; struct dentry *dentry; };
    /// struct file { int f_mode; const path_t f_path; union { struct { long a; union { int inner; long inner_wide; }; }; }; u8 flags:3 (kflag); struct path *f_path_ptr; };
    fn sample_blob() -> Vec<u8> {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4); // 1
        let long = b.int("long", 8); // 2
        let dentry = b.composite(KIND_STRUCT, "dentry", 8, &[("d_inode", long, 0)]); // 3
        let dentry_ptr = b.ptr(dentry); // 4
        let void_ptr = b.ptr(0); // 5
        let path = b.composite(
            KIND_STRUCT,
            "path",
            16,
            &[("mnt", void_ptr, 0), ("dentry", dentry_ptr, 64)],
        ); // 6
        let path_t = b.modifier(KIND_TYPEDEF, "path_t", path); // 7
        let const_path = b.modifier(KIND_CONST, "", path_t); // 8
        let inner_union = b.composite(
            KIND_UNION,
            "",
            8,
            &[("inner", int, 0), ("inner_wide", long, 0)],
        ); // 9
        let anon_struct = b.composite(
            KIND_STRUCT,
            "",
            16,
            &[("a", long, 0), ("", inner_union, 64)],
        ); // 10
        let anon_union = b.composite(KIND_UNION, "", 16, &[("", anon_struct, 0)]); // 11
        let path_ptr = b.ptr(path); // 12
                                    // Forward-declared and empty duplicates must not shadow the real struct.
        b.push_type("file", KIND_FWD, false, 0, 0, &[]);
        b.composite(KIND_STRUCT, "file", 0, &[]);
        let mut extra = Vec::new();
        for (name, type_id, offset) in [
            ("f_mode", int, 0),
            ("f_path", const_path, 64),
            ("", anon_union, 192),
            ("flags", int, (3 << 24) | 320),
            ("f_path_ptr", path_ptr, 384),
            ("odd", int, 452),
        ] {
            extra.extend([b.string(name), type_id, offset]);
        }
        b.push_type("file", KIND_STRUCT, true, 6, 64, &extra);
        b.build()
    }

    fn sample() -> Btf {
        Btf::parse(&sample_blob()).expect("sample blob parses")
    }

    #[test]
    fn direct_member_offset() {
        let btf = sample();
        assert_eq!(btf.member_offset("file", &["f_mode"]).unwrap(), 0);
        assert_eq!(btf.member_offset("file", &["f_path_ptr"]).unwrap(), 48);
        assert_eq!(btf.member_offset("path", &["dentry"]).unwrap(), 8);
    }

    #[test]
    fn nested_path_through_typedef_and_const_adds_offsets() {
        let btf = sample();
        assert_eq!(
            btf.member_offset("file", &["f_path", "dentry"]).unwrap(),
            16
        );
        assert_eq!(btf.member_offset("file", &["f_path", "mnt"]).unwrap(), 8);
    }

    #[test]
    fn member_inside_anonymous_union_inside_anonymous_struct() {
        let btf = sample();
        // 24 (anon union) + 0 (anon struct) + 8 (anon inner union) + 0.
        assert_eq!(btf.member_offset("file", &["inner_wide"]).unwrap(), 32);
        assert_eq!(btf.member_offset("file", &["a"]).unwrap(), 24);
    }

    #[test]
    fn union_root_is_accepted() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        b.composite(KIND_UNION, "u", 4, &[("x", int, 0), ("y", int, 0)]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.member_offset("u", &["y"]).unwrap(), 0);
    }

    #[test]
    fn pointer_member_is_not_followed() {
        let err = sample()
            .member_offset("file", &["f_path_ptr", "dentry"])
            .unwrap_err();
        assert!(matches!(err, BtfError::PointerNotFollowed { .. }), "{err}");
        assert!(
            err.to_string().contains("`file.f_path_ptr` is a pointer"),
            "{err}"
        );
    }

    #[test]
    fn descending_into_int_is_an_error() {
        let err = sample()
            .member_offset("file", &["f_mode", "x"])
            .unwrap_err();
        assert!(err.to_string().contains("`file.f_mode` is an int"), "{err}");
    }

    #[test]
    fn bitfield_and_misaligned_targets_are_rejected() {
        let btf = sample();
        let err = btf.member_offset("file", &["flags"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`file.flags` is a bitfield; only byte-aligned members are supported"
        );
        let err = btf.member_offset("file", &["odd"]).unwrap_err();
        assert!(
            matches!(err, BtfError::Bitfield(ref path) if path == "file.odd"),
            "{err}"
        );
    }

    #[test]
    fn int_encoded_bitfield_is_rejected() {
        let mut b = BtfBuilder::new();
        let three_bits = b.push_type("unsigned int", KIND_INT, false, 0, 4, &[3]);
        b.composite(KIND_STRUCT, "s", 4, &[("bits", three_bits, 0)]);
        let err = Btf::parse(&b.build())
            .unwrap()
            .member_offset("s", &["bits"])
            .unwrap_err();
        assert!(matches!(err, BtfError::Bitfield(_)), "{err}");
    }

    #[test]
    fn unknown_struct_and_member_errors_name_them() {
        let btf = sample();
        let err = btf.member_offset("linux_binprm", &["file"]).unwrap_err();
        assert_eq!(err.to_string(), "BTF has no struct named `linux_binprm`");
        let err = btf.member_offset("file", &["f_pathx"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "struct `file` has no member `f_pathx` (looked inside anonymous structs and unions too)"
        );
        let err = btf
            .member_offset("file", &["f_path", "dentryx"])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("struct `file.f_path` has no member `dentryx`"),
            "{err}"
        );
        assert!(matches!(
            btf.member_offset("file", &[]),
            Err(BtfError::EmptyPath(_))
        ));
        assert!(matches!(
            btf.member_offset("file", &[""]),
            Err(BtfError::NoSuchMember { .. })
        ));
    }

    #[test]
    fn garbage_input_is_rejected() {
        let valid = sample_blob();
        let mut big_endian = valid.clone();
        big_endian.swap(0, 1);
        let mut bad_version = valid.clone();
        bad_version[2] = 2;
        let mut huge_type_len = valid.clone();
        huge_type_len[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut unknown_kind = valid.clone();
        unknown_kind[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&(31u32 << 24).to_le_bytes());
        let mut bad_name = valid.clone();
        bad_name[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        for (label, blob) in [
            ("empty", Vec::new()),
            ("text", b"this is definitely not BTF at all".to_vec()),
            ("big endian", big_endian),
            ("version", bad_version),
            ("type_len", huge_type_len),
            ("kind", unknown_kind),
            ("name", bad_name),
        ] {
            let result = Btf::parse(&blob);
            assert!(
                matches!(result, Err(BtfError::Malformed(_))),
                "{label} was accepted"
            );
        }
    }

    #[test]
    fn cyclic_types_error_instead_of_hanging() {
        let mut b = BtfBuilder::new();
        b.modifier(KIND_TYPEDEF, "loop", 2); // 1 -> 2
        b.modifier(KIND_CONST, "", 1); // 2 -> 1
        b.composite(KIND_STRUCT, "s", 8, &[("x", 1, 0), ("", 4, 0)]); // 3
        b.composite(KIND_STRUCT, "", 8, &[("", 3, 0)]); // 4, anonymous cycle with 3
        let btf = Btf::parse(&b.build()).unwrap();
        assert!(matches!(
            btf.member_offset("s", &["x", "y"]),
            Err(BtfError::Malformed(_))
        ));
        assert!(matches!(
            btf.member_offset("s", &["missing"]),
            Err(BtfError::Malformed(_))
        ));
    }

    #[test]
    fn truncations_and_corruptions_never_panic() {
        let valid = sample_blob();
        for len in 0..valid.len() {
            assert!(
                Btf::parse(&valid[..len]).is_err(),
                "truncation to {len} bytes was accepted"
            );
        }
        // Corrupt each byte in a few ways; parsing and lookups may fail but must not panic.
        for index in 0..valid.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut blob = valid.clone();
                blob[index] ^= flip;
                if let Ok(btf) = Btf::parse(&blob) {
                    for path in [
                        &["f_mode"][..],
                        &["f_path", "dentry"],
                        &["inner_wide"],
                        &["flags"],
                    ] {
                        let _ = btf.member_offset("file", path);
                    }
                }
            }
        }
    }

    #[test]
    fn resolves_offsets_on_running_kernel() {
        let btf = Btf::from_sys_fs().unwrap_or_else(|err| {
            panic!("this test needs the running kernel's BTF at {VMLINUX_BTF_PATH} (CONFIG_DEBUG_INFO_BTF=y): {err}")
        });
        let paths: &[(&str, &[&str])] = &[
            ("linux_binprm", &["file"]),
            ("linux_binprm", &["argc"]),
            ("linux_binprm", &["filename"]),
            ("linux_binprm", &["buf"]),
            ("linux_binprm", &["p"]),
            ("file", &["f_inode"]),
            ("file", &["f_mode"]),
            ("file", &["f_path"]),
            ("file", &["f_path", "dentry"]),
            ("dentry", &["d_name", "name"]),
            ("inode", &["i_ino"]),
            ("inode", &["i_sb"]),
            ("inode", &["i_size"]),
            ("super_block", &["s_dev"]),
            ("super_block", &["s_magic"]),
            ("task_struct", &["mm"]),
            ("task_struct", &["real_parent"]),
            ("task_struct", &["tgid"]),
            ("mm_struct", &["arg_start"]),
            ("mm_struct", &["arg_end"]),
            ("mm_struct", &["exe_file"]),
        ];
        let mut offsets = std::collections::HashMap::new();
        for &(root, path) in paths {
            let name = format!("{root}.{}", path.join("."));
            let offset = btf
                .member_offset(root, path)
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            println!("{name} = {offset}");
            assert!(offset < 16384, "{name} = {offset} is implausibly large");
            offsets.insert(name, offset);
        }
        assert_eq!(offsets["file.f_path.dentry"], offsets["file.f_path"] + 8);
        assert_eq!(
            offsets["mm_struct.arg_end"],
            offsets["mm_struct.arg_start"] + 8
        );
        assert!(offsets["task_struct.mm"] > 0 && offsets["task_struct.real_parent"] > 0);
    }
}
