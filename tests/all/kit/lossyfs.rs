//! LossyFs: a FUSE file system that forgets, at a simulated power cut,
//! every write that was not synced, after the idea of Jepsen's LazyFS.
//!
//! It passes everything through to a backing directory, except file data:
//! a write is kept in memory, in 4 KiB pages per file, and reaches the
//! backing file only when that file is synced (`fsync`, `fdatasync`, or a
//! write to a file opened with `O_SYNC`/`O_DSYNC`). A truncation is held the
//! same way. Reads see the held data, so the program on top cannot tell the
//! difference until the power goes.
//!
//! Metadata operations (create, mkdir, unlink, rename, chmod) are durable
//! at once, as on ext4 with `data=ordered` once its journal has committed;
//! `fsync` of a directory therefore has nothing left to do. That is looser
//! than POSIX, which asks for the directory's `fsync`, but it is the file
//! data a database must sync, and that is what this layer is strict about.
//!
//! [`LossyFs::cut_power`] is the power cut: everything held is thrown away,
//! every later operation fails with `EIO`, and the file system is unmounted.
//! The backing directory then holds exactly what had been synced, and a new
//! mount starts from it. The backing files themselves are never fsynced: the
//! simulated power cut is this layer's, not the machine's.

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const PAGE: u64 = 4096;
/// Every change reaches the kernel through this file system, so what the
/// kernel caches stays true; an unmount drops the cache with the rest.
const TTL: Duration = Duration::from_secs(1);

/// A mounted LossyFs. Dropping it unmounts (unsynced writes are lost, as
/// in a power cut), so a failed test never leaves a mount behind.
pub struct LossyFs {
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

/// What a power cut threw away.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lost {
    /// Files with unsynced writes.
    pub files: usize,
    /// Unsynced 4 KiB pages.
    pub pages: usize,
}

impl LossyFs {
    /// Mounts a LossyFs over `backing` at `mountpoint` (an empty directory).
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<LossyFs> {
        let root_ino = fs::metadata(backing)?.ino();
        let state = Arc::new(Mutex::new(State {
            root_ino,
            paths: HashMap::from([(INodeNo::ROOT.0, backing.to_path_buf())]),
            handles: HashMap::new(),
            next_fh: 1,
            held: HashMap::new(),
            powered: true,
        }));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("lossyfs".into())];
        let fs = Fs(state.clone());
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        Ok(LossyFs {
            state,
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// The power cut: throws away every unsynced write, fails every later
    /// operation, and unmounts. Stop the program on top first (SIGKILL), so
    /// that it cannot sync anything more.
    pub fn cut_power(mut self) -> io::Result<Lost> {
        let lost = self.drop_held();
        self.unmount()?;
        Ok(lost)
    }

    fn unmount(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        session.umount_and_join().inspect_err(|_| {
            // Still busy (a process that is not ours in it, say): detach it
            // from the tree so that nothing is left mounted, and tell.
            let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
                .expect("a path without NUL");
            // SAFETY: a valid NUL-terminated path; umount2 only reads it.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        })
    }

    fn drop_held(&self) -> Lost {
        let mut state = lock(&self.state);
        state.powered = false;
        state.handles.clear();
        let lost = Lost {
            files: state.held.len(),
            pages: state.held.values().map(|h| h.pages.len()).sum(),
        };
        state.held.clear();
        lost
    }
}

impl Drop for LossyFs {
    fn drop(&mut self) {
        if self.session.is_some() {
            self.drop_held();
            if let Err(e) = self.unmount() {
                eprintln!("lossyfs: unmount failed ({e}); detached instead");
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic on the file system thread must not hide the test's own error.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct State {
    /// The backing directory's inode, shown to the kernel as the root (1).
    root_ino: u64,
    /// Where each inode the kernel knows lives in the backing directory.
    paths: HashMap<u64, PathBuf>,
    /// Open files: the backing file behind each handle.
    handles: HashMap<u64, (u64, Arc<File>)>,
    next_fh: u64,
    /// Unsynced data, per inode.
    held: HashMap<u64, Held>,
    /// False after the power cut.
    powered: bool,
}

/// A file's unsynced state: its size as the program sees it and the pages
/// written since the last sync, whole.
struct Held {
    size: u64,
    /// The smallest size since the last sync: bytes of the backing file at
    /// or past it were truncated away and read as zeros.
    floor: u64,
    pages: BTreeMap<u64, Vec<u8>>,
}

impl Held {
    fn new(file: &File) -> io::Result<Held> {
        let size = file.metadata()?.len();
        Ok(Held {
            size,
            floor: size,
            pages: BTreeMap::new(),
        })
    }
}

/// Reads page `n` of the backing file as it stands for a file whose bytes
/// from `floor` on were truncated away.
fn load_page(file: &File, n: u64, floor: u64) -> io::Result<Vec<u8>> {
    let mut page = vec![0; PAGE as usize];
    let start = n * PAGE;
    let mut done = 0;
    while done < page.len() {
        let read = file.read_at(&mut page[done..], start + done as u64)?;
        if read == 0 {
            break;
        }
        done += read;
    }
    if floor < start + PAGE {
        let from = floor.saturating_sub(start) as usize;
        page[from..].fill(0);
    }
    Ok(page)
}

impl State {
    fn path(&self, ino: INodeNo) -> Result<&PathBuf, Errno> {
        self.paths.get(&ino.0).ok_or(Errno::ENOENT)
    }

    fn file(&self, fh: FileHandle) -> Result<(u64, Arc<File>), Errno> {
        self.handles
            .get(&fh.0)
            .map(|(ino, f)| (*ino, f.clone()))
            .ok_or(Errno::EBADF)
    }

    fn ino_of(&self, meta: &fs::Metadata) -> u64 {
        if meta.ino() == self.root_ino {
            INodeNo::ROOT.0
        } else {
            meta.ino()
        }
    }

    fn attr(&self, meta: &fs::Metadata) -> FileAttr {
        let ino = self.ino_of(meta);
        let kind = FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile);
        let size = self.held.get(&ino).map_or(meta.len(), |h| h.size);
        let time = |secs: i64, nanos: i64| {
            SystemTime::UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos as u32)
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: PAGE as u32,
            flags: 0,
        }
    }

    /// Looks up `path`, remembers it under its inode, returns its attributes.
    fn enter(&mut self, path: PathBuf) -> Result<FileAttr, Errno> {
        let meta = fs::symlink_metadata(&path)?;
        let attr = self.attr(&meta);
        self.paths.insert(attr.ino.0, path);
        Ok(attr)
    }

    fn open_handle(&mut self, ino: u64, file: File) -> FileHandle {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, (ino, Arc::new(file)));
        FileHandle(fh)
    }

    fn held(&mut self, ino: u64, file: &File) -> io::Result<&mut Held> {
        Ok(match self.held.entry(ino) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Held::new(file)?),
        })
    }

    fn write(&mut self, ino: u64, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let held = self.held(ino, file)?;
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let n = at / PAGE;
            let page = match held.pages.entry(n) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(load_page(file, n, held.floor)?)
                }
            };
            let in_page = (at - n * PAGE) as usize;
            let take = ((PAGE as usize) - in_page).min((end - at) as usize);
            let from = (at - offset) as usize;
            page[in_page..in_page + take].copy_from_slice(&data[from..from + take]);
            at += take as u64;
        }
        held.size = held.size.max(end);
        Ok(())
    }

    fn truncate(&mut self, ino: u64, file: &File, size: u64) -> io::Result<()> {
        let held = self.held(ino, file)?;
        held.size = size;
        held.floor = held.floor.min(size);
        held.pages.retain(|n, _| n * PAGE < size);
        if let Some(page) = held.pages.get_mut(&(size / PAGE)) {
            page[(size % PAGE) as usize..].fill(0);
        }
        Ok(())
    }

    fn read(&self, ino: u64, file: &File, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let Some(held) = self.held.get(&ino) else {
            let mut buf = vec![0; size as usize];
            let mut done = 0;
            while done < buf.len() {
                let read = file.read_at(&mut buf[done..], offset + done as u64)?;
                if read == 0 {
                    break;
                }
                done += read;
            }
            buf.truncate(done);
            return Ok(buf);
        };
        let end = (offset + u64::from(size)).min(held.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let n = at / PAGE;
            let loaded;
            let page = match held.pages.get(&n) {
                Some(page) => page,
                None => {
                    loaded = load_page(file, n, held.floor)?;
                    &loaded
                }
            };
            let in_page = (at - n * PAGE) as usize;
            let take = ((PAGE as usize) - in_page).min((end - at) as usize);
            out.extend_from_slice(&page[in_page..in_page + take]);
            at += take as u64;
        }
        Ok(out)
    }

    /// Makes a file's held data durable: writes it to the backing file.
    fn sync(&mut self, ino: u64, file: &File) -> io::Result<()> {
        let Some(held) = self.held.remove(&ino) else {
            return Ok(());
        };
        file.set_len(held.floor.min(held.size))?;
        for (n, page) in &held.pages {
            let start = n * PAGE;
            if start >= held.size {
                continue;
            }
            let len = PAGE.min(held.size - start) as usize;
            file.write_all_at(&page[..len], start)?;
        }
        file.set_len(held.size)
    }
}

/// The file system the kernel talks to; every call takes the state's lock.
struct Fs(Arc<Mutex<State>>);

/// Runs `op` on the state unless the power is off, and answers an error.
macro_rules! powered {
    ($self:ident, $reply:ident, |$state:ident| $body:expr) => {{
        let mut guard = lock(&$self.0);
        if !guard.powered {
            $reply.error(Errno::EIO);
            return;
        }
        let $state: &mut State = &mut guard;
        let result: Result<_, Errno> = (|| $body)();
        match result {
            Ok(answer) => answer,
            Err(e) => {
                $reply.error(e);
                return;
            }
        }
    }};
}

fn child(state: &State, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
    Ok(state.path(parent)?.join(name))
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let attr = powered!(self, reply, |s| {
            let path = child(s, parent, name)?;
            s.enter(path)
        });
        reply.entry(&TTL, &attr, Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let attr = powered!(self, reply, |s| {
            let meta = fs::symlink_metadata(s.path(ino)?)?;
            Ok(s.attr(&meta))
        });
        reply.attr(&TTL, &attr);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let attr = powered!(self, reply, |s| {
            let path = s.path(ino)?.clone();
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if let Some(size) = size {
                let file = match fh {
                    Some(fh) => s.file(fh)?.1,
                    None => Arc::new(OpenOptions::new().write(true).open(&path)?),
                };
                s.truncate(ino.0, &file, size)?;
            }
            let meta = fs::symlink_metadata(&path)?;
            Ok(s.attr(&meta))
        });
        reply.attr(&TTL, &attr);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let attr = powered!(self, reply, |s| {
            let path = child(s, parent, name)?;
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(&path)?;
            s.enter(path)
        });
        reply.entry(&TTL, &attr, Generation(0));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        powered!(self, reply, |s| {
            let path = child(s, parent, name)?;
            let ino = s.ino_of(&fs::symlink_metadata(&path)?);
            fs::remove_file(&path)?;
            // Its held data goes with it: the inode number may come back.
            s.held.remove(&ino);
            s.paths.remove(&ino);
            Ok(())
        });
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        powered!(self, reply, |s| {
            let path = child(s, parent, name)?;
            let ino = s.ino_of(&fs::symlink_metadata(&path)?);
            fs::remove_dir(&path)?;
            s.paths.remove(&ino);
            Ok(())
        });
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        powered!(self, reply, |s| {
            if !flags.is_empty() {
                return Err(Errno::EINVAL);
            }
            let from = child(s, parent, name)?;
            let to = child(s, newparent, newname)?;
            if let Ok(meta) = fs::symlink_metadata(&to) {
                let replaced = s.ino_of(&meta);
                s.held.remove(&replaced);
            }
            fs::rename(&from, &to)?;
            for path in s.paths.values_mut() {
                if let Ok(rest) = path.strip_prefix(&from) {
                    *path = to.join(rest);
                }
            }
            Ok(())
        });
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fh = powered!(self, reply, |s| {
            let path = s.path(ino)?.clone();
            let writable = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
            let file = OpenOptions::new().read(true).write(writable).open(&path)?;
            Ok(s.open_handle(ino.0, file))
        });
        reply.opened(fh, FopenFlags::empty());
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (attr, fh) = powered!(self, reply, |s| {
            let path = child(s, parent, name)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .create_new(flags & libc::O_EXCL != 0)
                .mode(mode & !umask & 0o7777)
                .open(&path)?;
            let attr = s.enter(path)?;
            s.held.remove(&attr.ino.0);
            let fh = s.open_handle(attr.ino.0, file);
            Ok((attr, fh))
        });
        reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let data = powered!(self, reply, |s| {
            let (ino, file) = s.file(fh)?;
            Ok(s.read(ino, &file, offset, size)?)
        });
        reply.data(&data);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        powered!(self, reply, |s| {
            let (ino, file) = s.file(fh)?;
            s.write(ino, &file, offset, data)?;
            if flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0 {
                s.sync(ino, &file)?;
            }
            Ok(())
        });
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.0).handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        powered!(self, reply, |s| {
            let (ino, file) = s.file(fh)?;
            Ok(s.sync(ino, &file)?)
        });
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = powered!(self, reply, |s| {
            let path = s.path(ino)?;
            let mut entries = vec![
                (ino.0, FileType::Directory, ".".into()),
                (ino.0, FileType::Directory, "..".into()),
            ];
            for entry in fs::read_dir(path)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let kind = FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile);
                entries.push((s.ino_of(&meta), kind, entry.file_name()));
            }
            Ok(entries)
        });
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Metadata is durable at once (see the module's documentation).
        reply.ok();
    }
}
