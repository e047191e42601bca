//! What a task stopped in a system call asks for, read from outside it: its
//! memory (`process_vm_readv`, CAP_SYS_PTRACE) and the file its exec names,
//! resolved as the kernel would resolve it for that task.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use airlock_common::kernel::{BINPRM_BUF, MAX_WORDS, WORD_VISIBLE};
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

const PAGE: u64 = 4096;
/// Longest path read from the task (`PATH_MAX`).
const PATH_MAX: usize = 4096;

/// Pages one `process_vm_readv` asks for at most (the kernel copies its
/// iovec arrays up to `UIO_FASTIOV` without allocating).
const PAGES_PER_READ: usize = 8;

/// An empty `PAGES_PER_READ` array of remote iovecs.
fn no_pieces() -> [libc::iovec; PAGES_PER_READ] {
    [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; PAGES_PER_READ]
}

/// Adds `len` bytes at `addr`, split at page boundaries, to the remote
/// iovecs after the first `*pieces`, as far as there is room; returns how
/// many bytes the added pieces cover.
fn add_pieces(
    remote: &mut [libc::iovec; PAGES_PER_READ],
    pieces: &mut usize,
    addr: u64,
    len: usize,
) -> usize {
    let mut covered = 0;
    while *pieces < PAGES_PER_READ && covered < len {
        let at = addr + covered as u64;
        let piece = (len - covered).min((PAGE - at % PAGE) as usize);
        remote[*pieces] = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: piece,
        };
        *pieces += 1;
        covered += piece;
    }
    covered
}

/// Copies up to `buf.len()` bytes at `addr` of task `pid`, stopping at the
/// first page that is not mapped; returns how many were copied. One system
/// call per `PAGES_PER_READ` pages: the remote side is split at page
/// boundaries, and the kernel stops at the first piece it cannot read and
/// counts the whole pieces before it.
fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let mut remote = no_pieces();
        let mut pieces = 0;
        let len = add_pieces(
            &mut remote,
            &mut pieces,
            addr + done as u64,
            buf.len() - done,
        );
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: len,
        };
        // SAFETY: the local iovec covers `len` bytes of `buf`, which we own
        // mutably; the remote ones (`pieces` of them, `len` bytes in all)
        // are only read, by the kernel, from the other task.
        let n = unsafe {
            libc::process_vm_readv(
                pid as libc::pid_t,
                &local,
                1,
                remote.as_ptr(),
                pieces as libc::c_ulong,
                0,
            )
        };
        if n <= 0 {
            break;
        }
        done += n as usize;
        if (n as usize) < len {
            break;
        }
    }
    done
}

/// Copies two stretches of task `pid`'s memory in one system call (an
/// exec's pointer array and its path's neighbourhood), each split at page
/// boundaries as in [`read_memory`]; returns how many bytes of each were
/// copied. The kernel stops at the first page it cannot read, so what
/// follows an unreadable page of the first stretch is not copied.
fn read_memory_pair(pid: u32, first: (u64, &mut [u8]), second: (u64, &mut [u8])) -> (usize, usize) {
    let mut remote = no_pieces();
    let mut pieces = 0;
    for (addr, len) in [(first.0, first.1.len()), (second.0, second.1.len())] {
        let covered = add_pieces(&mut remote, &mut pieces, addr, len);
        assert_eq!(covered, len, "a pair spans at most {PAGES_PER_READ} pages");
    }
    let (first_len, second_len) = (first.1.len(), second.1.len());
    let local = [
        libc::iovec {
            iov_base: first.1.as_mut_ptr().cast(),
            iov_len: first_len,
        },
        libc::iovec {
            iov_base: second.1.as_mut_ptr().cast(),
            iov_len: second_len,
        },
    ];
    // SAFETY: the two local iovecs cover the two buffers, which we own
    // mutably, `first_len + second_len` bytes in all, as many as the
    // `pieces` remote ones; those are only read, by the kernel, from the
    // other task.
    let n = unsafe {
        libc::process_vm_readv(
            pid as libc::pid_t,
            local.as_ptr(),
            2,
            remote.as_ptr(),
            pieces as libc::c_ulong,
            0,
        )
    };
    let n = n.max(0) as usize;
    (
        n.min(first_len),
        n.saturating_sub(first_len).min(second_len),
    )
}

/// Longest stretch of the task's memory read at once for the strings of
/// one exec: more than `MAX_WORDS` words of `WORD_VISIBLE` bytes side by
/// side.
const SPAN_MAX: usize = 8192;
/// How much of the path is looked at in the first read; a longer one is
/// read on its own.
const PATH_PEEK: usize = 256;

/// The stretch read at an exec's path: to the end of its page, and at
/// least `PATH_PEEK` bytes.
fn path_window(path: u64) -> usize {
    ((PAGE - path % PAGE) as usize).max(PATH_PEEK)
}

/// Stretches of the task's memory copied at once, covering the strings an
/// exec names: their pointers usually lie close together (the kernel's
/// own argv block, a libc's or a runtime's heap), so a few reads replace
/// one per string. Each string is then cut out as [`read_string`] and
/// [`read_word`] would read it; one whose stretch was cut short by an
/// unmapped page is read on its own, with their own answer.
struct Spans {
    spans: Vec<(u64, Vec<u8>)>,
}

impl Spans {
    /// Reads the memory behind `windows` (`(address, length)`), merging
    /// neighbours into spans of at most `SPAN_MAX` bytes; `known` holds
    /// spans already read, and a window inside one is not read again.
    fn read(pid: u32, windows: &mut [(u64, usize)], known: Vec<(u64, Vec<u8>)>) -> Spans {
        windows.sort_unstable();
        let covered = |&(at, len): &(u64, usize)| {
            known.iter().any(|(start, bytes)| {
                *start <= at && at.saturating_add(len as u64) <= start + bytes.len() as u64
            })
        };
        let mut spans = Vec::new();
        let mut current: Option<(u64, u64)> = None;
        let flush = |span: (u64, u64), spans: &mut Vec<(u64, Vec<u8>)>| {
            let mut bytes = vec![0u8; (span.1 - span.0) as usize];
            let n = read_memory(pid, span.0, &mut bytes);
            bytes.truncate(n);
            spans.push((span.0, bytes));
        };
        for &(at, len) in windows.iter().filter(|w| !covered(w)) {
            let end = at.saturating_add(len as u64);
            current = match current {
                // Within a page of the span, and the whole no longer than
                // SPAN_MAX: one read.
                Some((start, stop))
                    if at <= stop.saturating_add(PAGE) && end - start <= SPAN_MAX as u64 =>
                {
                    Some((start, stop.max(end)))
                }
                other => {
                    if let Some(span) = other {
                        flush(span, &mut spans);
                    }
                    Some((at, end))
                }
            };
        }
        if let Some(span) = current {
            flush(span, &mut spans);
        }
        spans.extend(known);
        Spans { spans }
    }

    /// The bytes read at `at`, up to `len` of them (fewer where the read
    /// stopped).
    fn at(&self, at: u64, len: usize) -> &[u8] {
        self.spans
            .iter()
            .find(|(start, bytes)| *start <= at && at - start < bytes.len() as u64)
            .map_or(&[], |(start, bytes)| {
                let from = (at - start) as usize;
                &bytes[from..bytes.len().min(from + len)]
            })
    }

    /// [`read_string`]`(pid, at, PATH_MAX)`.
    fn path(&self, pid: u32, at: u64) -> Option<Vec<u8>> {
        let seen = self.at(at, PATH_PEEK);
        match seen.iter().position(|&b| b == 0) {
            Some(end) if at != 0 => Some(seen[..end].to_vec()),
            _ => read_string(pid, at, PATH_MAX),
        }
    }

    /// [`read_word`]`(pid, at)`.
    fn word(&self, pid: u32, at: u64) -> Option<Vec<u8>> {
        let seen = self.at(at, WORD_VISIBLE);
        match seen.iter().position(|&b| b == 0) {
            Some(end) if at != 0 => Some(seen[..end].to_vec()),
            None if at != 0 && seen.len() == WORD_VISIBLE => Some(seen.to_vec()),
            _ => read_word(pid, at),
        }
    }
}

/// The NUL-terminated string at `addr`, at most `max` bytes; `None` when it
/// cannot be read or is longer.
fn read_string(pid: u32, addr: u64, max: usize) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    while out.len() <= max {
        let at = addr + out.len() as u64;
        let want = chunk.len().min((PAGE - at % PAGE) as usize);
        let n = read_memory(pid, at, &mut chunk[..want]);
        if n == 0 {
            return None;
        }
        if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return (out.len() <= max).then_some(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
    None
}

/// Argument word at `addr` as the program reads it: whole, or for a word
/// longer than a rule word its first `WORD_VISIBLE` bytes (longer than
/// `MAX_WORD_LEN`, so still known as too long); `None` when it cannot be
/// read.
fn read_word(pid: u32, addr: u64) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = vec![0u8; WORD_VISIBLE];
    let mut done = 0;
    while done < WORD_VISIBLE {
        let at = addr + done as u64;
        let want = (WORD_VISIBLE - done).min((PAGE - at % PAGE) as usize);
        let n = read_memory(pid, at, &mut out[done..done + want]);
        if n == 0 {
            return None;
        }
        if let Some(end) = out[done..done + n].iter().position(|&b| b == 0) {
            out.truncate(done + end);
            return Some(out);
        }
        done += n;
    }
    Some(out)
}

/// What an `execve` or `execveat` asks for.
pub struct ExecCall {
    /// The path as passed.
    pub path: Vec<u8>,
    /// `execveat`'s directory fd, unless `AT_FDCWD`.
    pub dirfd: Option<i32>,
    pub empty_path: bool,
    /// The words read (up to `MAX_WORDS`), each as the program sees it
    /// ([`read_word`]: a word longer than a rule word can be is cut after
    /// `WORD_VISIBLE` bytes); `None` for one that could not be read.
    pub argv: Vec<Option<Vec<u8>>>,
    /// Words in argv, counted up to `MAX_WORDS + 1`.
    pub argc: usize,
    /// Whether the argv array could be read at all (the kernel's stage
    /// one only trusts arguments it can read).
    pub argv_readable: bool,
}

impl ExecCall {
    /// Reads the call from the task: `execve(path, argv, envp)` or
    /// `execveat(dirfd, path, argv, envp, flags)`.
    pub fn read(pid: u32, execveat: bool, args: &[u64; 6]) -> Option<ExecCall> {
        let (dirfd, path, argv, flags) = if execveat {
            (args[0] as i32, args[1], args[2], args[4])
        } else {
            (libc::AT_FDCWD, args[0], args[1], 0)
        };
        // The pointer array and the path's neighbourhood (to the end of
        // its page: words often lie beside it) in one read, then the words
        // it does not cover, in as few reads as their addresses allow.
        let mut pointers = [0u8; 8 * (MAX_WORDS + 1)];
        let mut near_path = vec![0u8; path_window(path)];
        let (got, near) = match (argv, path) {
            (0, 0) => (0, 0),
            (0, _) => (0, read_memory(pid, path, &mut near_path)),
            (_, 0) => (read_memory(pid, argv, &mut pointers), 0),
            _ => read_memory_pair(pid, (argv, &mut pointers), (path, &mut near_path)),
        };
        let n = got / 8;
        let mut words = Vec::with_capacity(MAX_WORDS);
        let (mut argc, mut ended) = (0, false);
        for chunk in pointers[..n * 8].chunks_exact(8) {
            let pointer = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            if pointer == 0 {
                ended = true;
                break;
            }
            argc += 1;
            if words.len() < MAX_WORDS {
                words.push(pointer);
            }
        }
        near_path.truncate(near);
        let known = if path == 0 {
            Vec::new()
        } else {
            vec![(path, near_path)]
        };
        let mut windows: Vec<(u64, usize)> = words.iter().map(|&at| (at, WORD_VISIBLE)).collect();
        let memory = Spans::read(pid, &mut windows, known);
        let path = memory.path(pid, path)?;
        Some(ExecCall {
            path,
            dirfd: (dirfd != libc::AT_FDCWD).then_some(dirfd),
            empty_path: flags & libc::AT_EMPTY_PATH as u64 != 0,
            argv: words.iter().map(|&at| memory.word(pid, at)).collect(),
            argc,
            argv_readable: argc > 0 && (ended || n == MAX_WORDS + 1),
        })
    }

    /// `bprm->filename`: the path the kernel names the exec by.
    pub fn filename(&self) -> Vec<u8> {
        match self.dirfd {
            Some(fd) if !self.path.starts_with(b"/") => {
                if self.path.is_empty() && self.empty_path {
                    format!("/dev/fd/{fd}").into_bytes()
                } else {
                    let mut name = format!("/dev/fd/{fd}/").into_bytes();
                    name.extend_from_slice(&self.path);
                    name
                }
            }
            _ => self.path.clone(),
        }
    }
}

/// `binfmt_script`'s reading of a `#!` line: the interpreter and its one
/// optional argument, or `None` for a file that is not a script.
pub fn shebang(head: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let rest = head.strip_prefix(b"#!")?;
    let line = &rest[..rest.iter().position(|&b| b == b'\n' || b == 0)?];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = &line[line.iter().position(|b| !blank(b))?..];
    let end = line.iter().position(blank).unwrap_or(line.len());
    let (interpreter, rest) = line.split_at(end);
    let rest = rest.trim_ascii();
    Some((
        interpreter.to_vec(),
        (!rest.is_empty()).then(|| rest.to_vec()),
    ))
}

impl ExecCall {
    /// What the kernel runs for a script: its interpreter, with argv
    /// `interpreter [argument] filename argv[1..]`, still named (invoked
    /// as) by the script's filename.
    pub fn interpreted(&self, interpreter: Vec<u8>, argument: Option<Vec<u8>>) -> ExecCall {
        let filename = self.filename();
        let mut argv: Vec<Option<Vec<u8>>> = std::iter::once(Some(interpreter.clone()))
            .chain(argument.map(Some))
            .chain(std::iter::once(Some(filename.clone())))
            .chain(self.argv.iter().skip(1).cloned())
            .collect();
        let argc = self.argc.saturating_sub(1) + argv.len() - self.argv.len().saturating_sub(1);
        argv.truncate(MAX_WORDS);
        ExecCall {
            path: filename,
            dirfd: None,
            empty_path: false,
            argv,
            argc: argc.min(MAX_WORDS + 1),
            argv_readable: self.argv_readable,
        }
    }
}

/// The file an exec would run, opened by the enforcer.
pub struct Executable {
    /// Name of the real file (symlinks resolved), as its dentry has it.
    pub name: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Its first bytes, zero-padded, as the kernel reads them into
    /// `bprm->buf`.
    pub head: [u8; BINPRM_BUF],
}

fn open_path(dir: i32, path: &Path, resolve: ResolveFlag) -> io::Result<OwnedFd> {
    open_path_with(dir, path, resolve, OFlag::empty())
}

fn open_path_with(
    dir: i32,
    path: &Path,
    resolve: ResolveFlag,
    flags: OFlag,
) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | flags)
        .resolve(resolve);
    let fd = openat2(dir, path, how)?;
    // SAFETY: a fresh fd the kernel just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What one session's supervisor keeps from one exec to the next, so that
/// an exec costs fewer system calls: the session's root, and the first
/// bytes of the files its tasks ran.
#[derive(Default)]
pub struct Lookup {
    /// The session's root directory as its tasks see it, opened through
    /// the first task that execs. Every task of a session has the root of
    /// the process that installed the session's filter, which refuses
    /// `chroot`, `pivot_root`, `setns` and new mount namespaces.
    root: Option<OwnedFd>,
    heads: HashMap<(u64, u64), Head>,
}

/// A file's first bytes as read, and what its inode said then: a write
/// changes its ctime (and on 6.13 and later kernels, once the time has
/// been read, the ctime of the next write is fine-grained), so a file
/// whose size and times are unchanged is taken to hold the same bytes. A
/// file rewritten within one coarse tick is judged by its old head here;
/// the exec-commit program reads the real one, as for any change that
/// races the supervisor.
struct Head {
    stamp: Stamp,
    bytes: [u8; BINPRM_BUF],
}

/// What an inode says of its contents' version: size, mtime and ctime.
type Stamp = (i64, (i64, i64), (i64, i64));

fn stamp(meta: &libc::stat) -> Stamp {
    (
        meta.st_size,
        (meta.st_mtime, meta.st_mtime_nsec),
        (meta.st_ctime, meta.st_ctime_nsec),
    )
}

/// Files whose heads a session keeps; past this the cache starts again.
const HEADS_KEPT: usize = 512;

impl Lookup {
    /// The session's root, opened through task `pid` the first time.
    /// `still_asking` says whether the task still waits in its call: then
    /// its pid was not reused while we opened its root.
    fn root(&mut self, pid: u32, still_asking: &dyn Fn() -> bool) -> io::Result<i32> {
        if let Some(root) = &self.root {
            return Ok(root.as_raw_fd());
        }
        let root = open_path(
            libc::AT_FDCWD,
            Path::new(&format!("/proc/{pid}/root")),
            ResolveFlag::empty(),
        )?;
        if !still_asking() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(self.root.insert(root).as_raw_fd())
    }

    /// The first bytes of the regular file `fd` (`meta` its status), from
    /// the cache when the inode is unchanged.
    fn head(&mut self, fd: &OwnedFd, meta: &libc::stat) -> Option<[u8; BINPRM_BUF]> {
        let key = (meta.st_dev, meta.st_ino);
        let stamp = stamp(meta);
        if let Some(kept) = self.heads.get(&key).filter(|kept| kept.stamp == stamp) {
            return Some(kept.bytes);
        }
        let bytes = read_head(fd)?;
        if self.heads.len() >= HEADS_KEPT {
            self.heads.clear();
        }
        self.heads.insert(key, Head { stamp, bytes });
        Some(bytes)
    }
}

/// Reads the first bytes of the file behind the `O_PATH` descriptor `fd`,
/// reopened for reading through `/proc/self/fd` (not by its path again).
fn read_head(fd: &OwnedFd) -> Option<[u8; BINPRM_BUF]> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()?;
    let mut head = [0u8; BINPRM_BUF];
    let mut filled = 0;
    while filled < BINPRM_BUF {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    Some(head)
}

/// Opens `path` beneath the session's root, absolute symlinks included
/// (the enforcer's mount namespace may differ from the agent's).
fn open_in_root(
    pid: u32,
    path: &Path,
    last: Last,
    lookup: &mut Lookup,
    still_asking: &dyn Fn() -> bool,
) -> io::Result<OwnedFd> {
    let root = lookup.root(pid, still_asking)?;
    open_path_with(root, path, ResolveFlag::RESOLVE_IN_ROOT, last.flags())
}

/// Whether the path's last component, if a symlink, is followed.
#[derive(Clone, Copy)]
enum Last {
    Follow,
    /// Opened as it is: a symlink gives a descriptor of the link itself.
    Literal,
}

impl Last {
    fn flags(self) -> OFlag {
        match self {
            Last::Follow => OFlag::empty(),
            Last::Literal => OFlag::O_NOFOLLOW,
        }
    }
}

/// `/proc/self/...`, `/proc/thread-self/...` and `/dev/fd/...` name the
/// task's own files; resolved by the enforcer they would name its own.
fn own_files(pid: u32, path: &[u8]) -> Option<PathBuf> {
    let rest = [
        (&b"/proc/self/"[..], &b""[..]),
        (b"/proc/thread-self/", b""),
        (b"/dev/fd/", b"fd/"),
    ]
    .into_iter()
    .find_map(|(prefix, replacement)| {
        path.strip_prefix(prefix)
            .map(|rest| [replacement, rest].concat())
    })?;
    let mut own = format!("/proc/{pid}/").into_bytes();
    own.extend_from_slice(&rest);
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(&own)))
}

/// Opens the file `call` would run (`O_PATH`: a FIFO does not block us).
fn open_target(
    pid: u32,
    call: &ExecCall,
    last: Last,
    lookup: &mut Lookup,
    still_asking: &dyn Fn() -> bool,
) -> io::Result<OwnedFd> {
    let path = Path::new(std::ffi::OsStr::from_bytes(&call.path));
    if let Some(own) = own_files(pid, &call.path) {
        return open_path_with(libc::AT_FDCWD, &own, ResolveFlag::empty(), last.flags());
    }
    match call.dirfd {
        Some(fd) if !call.path.starts_with(b"/") => {
            let dir = format!("/proc/{pid}/fd/{fd}");
            if call.path.is_empty() && call.empty_path {
                return open_path_with(
                    libc::AT_FDCWD,
                    Path::new(&dir),
                    ResolveFlag::empty(),
                    last.flags(),
                );
            }
            let dir = open_path(libc::AT_FDCWD, Path::new(&dir), ResolveFlag::empty())?;
            open_path_with(dir.as_raw_fd(), path, ResolveFlag::empty(), last.flags())
        }
        _ if call.path.starts_with(b"/") => open_in_root(pid, path, last, lookup, still_asking),
        _ => {
            // Relative to the task's working directory, named as the task
            // sees it, so that absolute symlinks resolve in its root.
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))?;
            if cwd.is_absolute() && !cwd.as_os_str().as_bytes().ends_with(b" (deleted)") {
                open_in_root(pid, &cwd.join(path), last, lookup, still_asking)
            } else {
                let dir = format!("/proc/{pid}/cwd");
                let dir = open_path(libc::AT_FDCWD, Path::new(&dir), ResolveFlag::empty())?;
                open_path_with(dir.as_raw_fd(), path, ResolveFlag::empty(), last.flags())
            }
        }
    }
}

/// The name the path's last component gives the file it opens, when that
/// is a plain name (not `.`, `..` or empty, and not one of the task's own
/// files, whose names are numbers or `exe`).
fn literal_name(pid: u32, call: &ExecCall) -> Option<&[u8]> {
    if own_files(pid, &call.path).is_some() {
        return None;
    }
    let name = call.path.rsplit(|&b| b == b'/').next()?;
    (!matches!(name, b"" | b"." | b"..")).then_some(name)
}

impl Executable {
    /// The regular file `call` would run, or `None` when there is none to
    /// judge (missing, a directory, a device...: the exec itself fails).
    /// `still_asking` says whether the task still waits in its call.
    pub fn open(
        pid: u32,
        call: &ExecCall,
        lookup: &mut Lookup,
        still_asking: &dyn Fn() -> bool,
    ) -> Option<Executable> {
        // The last component opened as it is: when it is no symlink, the
        // path's last name is the file's, and the common exec costs no
        // readlink. A symlink (or a magic link in /proc) is opened again,
        // followed, and the file named by its real path. (A case-folding
        // file system may spell the kernel's dentry otherwise: the
        // exec-commit program judges the dentry's name.)
        let mut literal = literal_name(pid, call);
        let mut fd = open_target(pid, call, Last::Literal, lookup, still_asking).ok()?;
        // The O_PATH descriptor itself: no second lookup of the path.
        let mut meta = nix::sys::stat::fstat(fd.as_raw_fd()).ok()?;
        if meta.st_mode & libc::S_IFMT == libc::S_IFLNK {
            fd = open_target(pid, call, Last::Follow, lookup, still_asking).ok()?;
            meta = nix::sys::stat::fstat(fd.as_raw_fd()).ok()?;
            literal = None;
        }
        if meta.st_mode & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        let head = lookup.head(&fd, &meta)?;
        let mut name = match literal {
            Some(name) => name.to_vec(),
            None => {
                let target =
                    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
                target
                    .file_name()
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or_default()
            }
        };
        // An unlinked file (a memfd) is shown with this suffix; its dentry
        // has the name alone.
        if meta.st_nlink == 0 {
            if let Some(bare) = name.strip_suffix(b" (deleted)") {
                name = bare.to_vec();
            }
        }
        Some(Executable {
            name,
            dev: meta.st_dev,
            ino: meta.st_ino,
            size: meta.st_size as u64,
            head,
        })
    }
}

/// A few fields of `/proc/PID/status`: the process (thread group), its
/// parent and its real uid.
pub struct Status {
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
}

impl Status {
    pub fn read(pid: u32) -> Option<Status> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        Some(Status {
            tgid: field("Tgid:")?,
            ppid: field("PPid:")?,
            uid: field("Uid:")?,
        })
    }
}

/// The task's `comm`.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_owned())
        .unwrap_or_default()
}

/// Whether `fd` is a seccomp user-notification listener.
pub fn is_seccomp_listener(fd: &OwnedFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:seccomp notify")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_read_from_another_process_across_pages() {
        // Our own memory stands in for the task's: the same calls work on
        // ourselves without privileges.
        let pid = std::process::id();
        let mut page = vec![0u8; 3 * PAGE as usize];
        let base = page.as_ptr() as u64;
        let start = (PAGE - base % PAGE) as usize + PAGE as usize - 3;
        page[start..start + 6].copy_from_slice(b"apply\0");
        let at = base + start as u64;
        assert_eq!(read_string(pid, at, 254).as_deref(), Some(&b"apply"[..]));
        assert_eq!(read_string(pid, at, 4), None, "longer than allowed");
        assert_eq!(read_string(pid, 0, 254), None);
    }

    #[test]
    fn an_execs_strings_read_together_are_read_as_one_by_one() {
        // Words side by side, one across a page boundary, one longer than
        // a word is read, one far away (its own read), one at an address
        // never mapped.
        let pid = std::process::id();
        let mut near = vec![0u8; 3 * PAGE as usize];
        let base = near.as_ptr() as u64;
        let cross = (PAGE - base % PAGE) as usize + PAGE as usize - 2;
        near[cross..cross + 6].copy_from_slice(b"apply\0");
        near[10..17].copy_from_slice(b"/bin/x\0");
        near[17..20].copy_from_slice(b"-v\0");
        near[100..100 + 400].fill(b'a');
        let far = [b'f', b'a', b'r', 0];
        let far_at = far.as_ptr() as u64;
        let words = [
            base + 10,
            base + 17,
            base + cross as u64,
            base + 100,
            base + 18,
            far_at,
            8,
        ];
        let mut windows: Vec<(u64, usize)> = words.iter().map(|&at| (at, WORD_VISIBLE)).collect();
        let spans = Spans::read(pid, &mut windows, Vec::new());
        for at in words {
            assert_eq!(spans.word(pid, at), read_word(pid, at), "word at {at:#x}");
            assert_eq!(
                spans.path(pid, at),
                read_string(pid, at, PATH_MAX),
                "path at {at:#x}"
            );
        }
        assert_eq!(spans.word(pid, base + 100).unwrap().len(), WORD_VISIBLE);
        assert_eq!(spans.word(pid, 8), None);
        // A whole call: the pointer array, then the path and the words.
        let argv: Vec<u64> = vec![base + 10, base + 17, far_at, 0];
        let args = [base + 10, argv.as_ptr() as u64, 0, 0, 0, 0];
        let call = ExecCall::read(pid, false, &args).unwrap();
        assert_eq!(call.path, b"/bin/x");
        let read: Vec<_> = call.argv.iter().map(|w| w.as_deref().unwrap()).collect();
        assert_eq!(read, [&b"/bin/x"[..], b"-v", b"far"]);
        assert!(call.argv_readable && call.argc == 3);
        let unreadable_path = [8, argv.as_ptr() as u64, 0, 0, 0, 0];
        assert!(ExecCall::read(pid, false, &unreadable_path).is_none());
        // A pointer array the kernel cannot read: the path is still read
        // (on its own), and no argument is trusted.
        let unreadable_argv = [base + 10, 8, 0, 0, 0, 0];
        let call = ExecCall::read(pid, false, &unreadable_argv).unwrap();
        assert_eq!(call.path, b"/bin/x");
        assert!(!call.argv_readable && call.argc == 0);
        // A path that ends beside a page boundary, its words beyond it.
        let edge = base + cross as u64;
        let argv: Vec<u64> = vec![edge, base + 17, 0];
        let call = ExecCall::read(pid, false, &[edge, argv.as_ptr() as u64, 0, 0, 0, 0]).unwrap();
        assert_eq!(call.path, b"apply");
        let read: Vec<_> = call.argv.iter().map(|w| w.as_deref().unwrap()).collect();
        assert_eq!(read, [&b"apply"[..], b"-v"]);
    }

    #[test]
    fn a_shebang_line_is_read_as_binfmt_script_reads_it() {
        let head = |text: &str| {
            let mut buf = [0u8; BINPRM_BUF];
            buf[..text.len()].copy_from_slice(text.as_bytes());
            buf
        };
        assert_eq!(
            shebang(&head("#!/bin/sh\necho")),
            Some((b"/bin/sh".to_vec(), None))
        );
        assert_eq!(
            shebang(&head("#! /x/terraform  apply now \n")),
            Some((b"/x/terraform".to_vec(), Some(b"apply now".to_vec())))
        );
        assert_eq!(shebang(&head("\x7fELF")), None);
        let script = ExecCall {
            path: b"./i.tf".to_vec(),
            dirfd: None,
            empty_path: false,
            argv: vec![Some(b"./i.tf".to_vec()), Some(b"x".to_vec())],
            argc: 2,
            argv_readable: true,
        };
        let run = script.interpreted(b"/x/terraform".to_vec(), Some(b"apply".to_vec()));
        let words: Vec<&[u8]> = run.argv.iter().map(|w| w.as_deref().unwrap()).collect();
        assert_eq!(words, [&b"/x/terraform"[..], b"apply", b"./i.tf", b"x"]);
        assert_eq!((run.argc, run.filename()), (4, b"./i.tf".to_vec()));
    }

    #[test]
    fn the_exec_filename_is_the_kernels() {
        let call = |path: &[u8], dirfd, empty_path| ExecCall {
            path: path.to_vec(),
            dirfd,
            empty_path,
            argv: Vec::new(),
            argc: 0,
            argv_readable: false,
        };
        assert_eq!(call(b"./tf", None, false).filename(), b"./tf");
        assert_eq!(call(b"", Some(3), true).filename(), b"/dev/fd/3");
        assert_eq!(call(b"tf", Some(4), false).filename(), b"/dev/fd/4/tf");
        assert_eq!(call(b"/bin/tf", Some(4), false).filename(), b"/bin/tf");
        assert_eq!(
            own_files(7, b"/proc/self/fd/3"),
            Some(PathBuf::from("/proc/7/fd/3"))
        );
        assert_eq!(
            own_files(7, b"/dev/fd/3"),
            Some(PathBuf::from("/proc/7/fd/3"))
        );
        assert_eq!(own_files(7, b"/usr/bin/tf"), None);
    }

    #[test]
    fn an_executable_is_opened_in_the_tasks_root_and_named_by_its_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("terraform");
        std::fs::write(&real, b"#!/bin/sh\necho hi\n").unwrap();
        let link = dir.path().join("tf-link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let pid = std::process::id();
        let call = ExecCall {
            path: link.as_os_str().as_bytes().to_vec(),
            dirfd: None,
            empty_path: false,
            argv: Vec::new(),
            argc: 0,
            argv_readable: false,
        };
        let mut lookup = Lookup::default();
        let asking = || true;
        // A task gone while its root was opened leaves no root behind.
        let gone = || false;
        assert!(Executable::open(pid, &call, &mut lookup, &gone).is_none());
        assert!(lookup.root.is_none());
        let exe = Executable::open(pid, &call, &mut lookup, &asking).unwrap();
        assert_eq!(exe.name, b"terraform");
        assert_eq!(exe.size, 18);
        // Named without a symlink: by the last component, as the kernel's
        // dentry names it (a hard link by its own name).
        let hard = dir.path().join("tf-hard");
        std::fs::hard_link(&real, &hard).unwrap();
        for (path, name) in [(&real, &b"terraform"[..]), (&hard, b"tf-hard")] {
            let direct = ExecCall {
                path: path.as_os_str().as_bytes().to_vec(),
                dirfd: None,
                empty_path: false,
                argv: Vec::new(),
                argc: 0,
                argv_readable: false,
            };
            let exe = Executable::open(pid, &direct, &mut lookup, &asking).unwrap();
            assert_eq!(exe.name, name);
            let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&real).unwrap());
            assert_eq!(exe.ino, ino);
        }
        assert_eq!(&exe.head[..10], b"#!/bin/sh\n");
        assert!(exe.head[18..].iter().all(|&b| b == 0));
        // Rewritten in place, same size, after a clock tick: the new bytes
        // are read, not the kept ones.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&real, b"#!/bin/tf\necho hi\n").unwrap();
        let exe = Executable::open(pid, &call, &mut lookup, &asking).unwrap();
        assert_eq!(&exe.head[..10], b"#!/bin/tf\n");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let call = ExecCall {
            path: fifo.as_os_str().as_bytes().to_vec(),
            ..call
        };
        assert!(
            Executable::open(pid, &call, &mut lookup, &asking).is_none(),
            "a FIFO is not run"
        );
    }
}
