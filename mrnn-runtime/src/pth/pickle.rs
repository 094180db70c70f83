//! The pickle machine of the `.pth` reader: the bytes of a `data.pkl` in, one [`Value`] out, for
//! the subset of pickle that `torch.save` writes for a state dict, with every resource bounded.
//!
//! Python's pickle is a small stack machine whose programs may import and call any function.
//! This one knows the opcodes of protocol 2 that `torch.save` emits (and the four of protocol 4
//! that `pickle_protocol=4` adds: `FRAME`, `SHORT_BINUNICODE`, `MEMOIZE`, `STACK_GLOBAL`), and four
//! kinds of global: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, the parameter
//! rebuilders of `torch._utils`, and the `torch.*Storage` classes named by persistent ids. Any
//! other opcode or global is an error that names it, raised before anything uses it.
//!
//! The limits, and the attack each one stops:
//! * the work done ([`MAX_WORK`]: one unit per opcode, per value moved or copied and per memo
//!   slot made): a small file that makes the machine busy for minutes;
//! * the depth of nesting ([`MAX_DEPTH`]), checked as each container is built: a tuple nested a
//!   million deep overflows the thread's stack when it is dropped, printed or walked, which no
//!   `catch_unwind` can stop;
//! * the height of the stack and the number of marks ([`MAX_STACK`]), and the memo ([`MAX_MEMO`]);
//! * "billion laughs" (a list of ten references to a list of ten references to ...): values are
//!   shared (`Rc`), never deep-copied, so a reference to a memoized value costs one unit. A
//!   container is copied only when it is changed after being shared (copy on write: the memo keeps
//!   the value it was given, whatever later opcodes do to the copy on the stack, so no cycle can be
//!   built), and each copy is charged to the work.
//!
//! The memory of the values is bounded by the work (each unit adds at most one value of 24
//! bytes) and the size of the pickle (strings are copied out of it once): the worst files of
//! `tests/pickle.rs` (a copy-on-write bomb, a memo flood) take ~0.1 s and 60-80 MB.

use std::fmt;
use std::rc::Rc;

/// The most work (opcodes run, values moved or copied, memo entries made) a pickle may take: a
/// state dict takes about 60 units per tensor (516 for mRNNTorch's 8 tensors and their module
/// metadata), so this admits some 30,000 tensors.
pub(crate) const MAX_WORK: usize = 1 << 21;
/// The deepest nesting of containers: a state dict nests four or five deep.
pub(crate) const MAX_DEPTH: usize = 64;
/// The most values (and, separately, marks) on the stack at once: torch's pickler batches
/// `SETITEMS` and `APPENDS` by 1,000, so a state dict needs a few thousand at most.
pub(crate) const MAX_STACK: usize = 1 << 16;
/// The most entries in the memo (ids 0 to this, exclusive; picklers number them from 0): ~10 per
/// tensor.
pub(crate) const MAX_MEMO: usize = 1 << 20;
/// The longest module or class name of a `GLOBAL`.
const MAX_NAME: usize = 256;
/// The newest pickle protocol.
const HIGHEST_PROTOCOL: u8 = 5;

/// A value built by the machine. Containers are shared (`Rc`) and never changed once shared.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer that fits 64 bits (larger ones are refused).
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(Rc<str>),
    /// A tuple.
    Tuple(Rc<Seq>),
    /// A list.
    List(Rc<Seq>),
    /// A dict or an `OrderedDict`, entries in the order they were set.
    Dict(Rc<Map>),
    /// One of the globals the reader allows, not called yet.
    Global(Global),
    /// A storage named by a persistent id.
    Storage(Rc<Storage>),
    /// A tensor: the result of `_rebuild_tensor_v2` (or of a parameter rebuilder).
    Tensor(Rc<TensorSpec>),
}

/// The items of a tuple or a list, with the depth of their nesting.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seq {
    pub(crate) items: Vec<Value>,
    depth: usize,
}

/// The entries of a dict, with the depth of their nesting.
#[derive(Clone, Debug, Default)]
pub(crate) struct Map {
    pub(crate) entries: Vec<(Value, Value)>,
    depth: usize,
}

/// The globals a state dict may name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter` (`nn.Parameter`s saved as such).
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`.
    RebuildParameterWithState,
    /// `torch.<Name>Storage`, by name (whether its dtype is supported is decided with the tensor,
    /// so that the message can name the tensor).
    StorageType(Rc<str>),
}

/// A storage's persistent id: `('storage', torch.FloatStorage, '0', 'cuda:0', 900)`.
#[derive(Debug)]
pub(crate) struct Storage {
    /// The class's name: `FloatStorage`.
    pub(crate) type_name: Rc<str>,
    /// The key: the storage's bytes are the archive's entry `<name>/data/<key>`.
    pub(crate) key: Rc<str>,
    /// The number of elements it declares.
    pub(crate) numel: i64,
}

/// The arguments of a `_rebuild_tensor_v2` call, unchecked: [`super::archive`] checks them
/// against the storage, naming the tensor.
#[derive(Debug)]
pub(crate) struct TensorSpec {
    pub(crate) storage: Rc<Storage>,
    pub(crate) offset: i64,
    pub(crate) size: Vec<i64>,
    pub(crate) stride: Vec<i64>,
}

impl Value {
    /// How deep containers nest inside this value (a scalar is 0, `[]` is 1, `[[]]` is 2).
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            Value::Storage(_) => 1,
            Value::Tensor(_) => 2,
            _ => 0,
        }
    }

    /// What the value is, in words, for messages: scalars with their value, containers by their
    /// length (never their contents, which may be huge).
    pub(crate) fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(n) => format!("the int {n}"),
            Value::Float(x) => format!("the float {x}"),
            Value::Str(s) => {
                let shown: String = s.chars().take(40).flat_map(char::escape_debug).collect();
                let more = if s.chars().nth(40).is_some() { "..." } else { "" };
                format!("the string \"{shown}{more}\"")
            }
            Value::Tuple(s) => format!("a tuple of {}", count(s.items.len(), "item", "items")),
            Value::List(s) => format!("a list of {}", count(s.items.len(), "item", "items")),
            Value::Dict(m) => format!("a dict of {}", count(m.entries.len(), "entry", "entries")),
            Value::Global(g) => format!("the global {g}"),
            Value::Storage(_) => "a storage".into(),
            Value::Tensor(_) => "a tensor".into(),
        }
    }
}

/// `1 item`, `2 items`.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Global::OrderedDict => f.write_str("collections.OrderedDict"),
            Global::RebuildTensorV2 => f.write_str("torch._utils._rebuild_tensor_v2"),
            Global::RebuildParameter => f.write_str("torch._utils._rebuild_parameter"),
            Global::RebuildParameterWithState => {
                f.write_str("torch._utils._rebuild_parameter_with_state")
            }
            Global::StorageType(name) => write!(f, "torch.{name}"),
        }
    }
}

/// Why a pickle was refused, and the byte offset of the opcode that refused it.
#[derive(Debug)]
pub(crate) struct PickleError {
    pub(crate) at: usize,
    pub(crate) message: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.at)
    }
}

type Step<T = ()> = std::result::Result<T, String>;

/// Runs the pickle `data` to its `STOP` and returns the value it leaves.
pub(crate) fn load(data: &[u8]) -> Result<Value, PickleError> {
    run(data).map(|(value, _work)| value)
}

/// [`load`], and the work it took.
fn run(data: &[u8]) -> Result<(Value, usize), PickleError> {
    let mut machine =
        Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: Vec::new(), work: 0 };
    loop {
        let at = machine.pos;
        let Some(&op) = data.get(at) else {
            return Err(PickleError {
                at,
                message: "the pickle ends without a STOP opcode (truncated?)".into(),
            });
        };
        machine.pos += 1;
        match machine.step(op) {
            Ok(None) => {}
            Ok(Some(value)) => return Ok((value, machine.work)),
            Err(message) => return Err(PickleError { at, message }),
        }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// The stack's height at each open `MARK` (Python 3 keeps them apart from the values too).
    marks: Vec<usize>,
    /// By id: picklers number entries from 0, so a vector (as Python's own unpickler keeps it).
    memo: Vec<Option<Value>>,
    work: usize,
}

impl<'a> Machine<'a> {
    /// Runs one opcode; `Some` at `STOP`.
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per opcode: the dispatch reads best as one match"
    )]
    fn step(&mut self, op: u8) -> Step<Option<Value>> {
        self.charge(1)?;
        match op {
            0x80 => {
                let version = self.bytes(1, op)?[0];
                if version > HIGHEST_PROTOCOL {
                    return Err(format!(
                        "pickle protocol {version} is unknown (the newest is {HIGHEST_PROTOCOL})"
                    ));
                }
            }
            // FRAME: a hint for buffered readers (the whole pickle is in memory already).
            0x95 => {
                self.bytes(8, op)?;
            }
            b'.' => {
                let value = self.pop(op)?;
                return Ok(Some(value));
            }
            b'c' => {
                let module = self.line(op)?;
                let name = self.line(op)?;
                let global = resolve(&module, &name)?;
                self.push(Value::Global(global))?;
            }
            0x93 => {
                let name = self.pop(op)?;
                let module = self.pop(op)?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    return Err(format!(
                        "STACK_GLOBAL needs two strings, got {} and {}",
                        module.kind(),
                        name.kind()
                    ));
                };
                let global = resolve(module, name)?;
                self.push(Value::Global(global))?;
            }
            b'K' => {
                let b = self.bytes(1, op)?;
                self.push(Value::Int(i64::from(b[0])))?;
            }
            b'M' => {
                let b = self.bytes(2, op)?;
                self.push(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))))?;
            }
            b'J' => {
                let b = self.bytes(4, op)?;
                self.push(Value::Int(i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))))?;
            }
            0x8a => {
                let n = usize::from(self.bytes(1, op)?[0]);
                let b = self.bytes(n, op)?;
                self.push(Value::Int(long1(b)?))?;
            }
            // Floats are big-endian in pickles, unlike the integers.
            b'G' => {
                let b = self.bytes(8, op)?;
                let bits: [u8; 8] = b.try_into().map_err(|_| "BINFLOAT needs 8 bytes")?;
                self.push(Value::Float(f64::from_be_bytes(bits)))?;
            }
            b'X' => {
                let b = self.bytes(4, op)?;
                let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let s = self.string(n, op)?;
                self.push(s)?;
            }
            0x8c => {
                let n = usize::from(self.bytes(1, op)?[0]);
                let s = self.string(n, op)?;
                self.push(s)?;
            }
            b'N' => self.push(Value::None)?,
            0x88 => self.push(Value::Bool(true))?,
            0x89 => self.push(Value::Bool(false))?,
            b')' => self.push(tuple(Vec::new())?)?,
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let items = self.pop_n(n, op)?;
                self.push(tuple(items)?)?;
            }
            b't' => {
                let items = self.pop_mark(op)?;
                self.push(tuple(items)?)?;
            }
            b']' => self.push(Value::List(Rc::default()))?,
            b'a' => {
                let item = self.pop(op)?;
                self.extend_list(vec![item], op)?;
            }
            b'e' => {
                let items = self.pop_mark(op)?;
                self.extend_list(items, op)?;
            }
            b'}' => self.push(Value::Dict(Rc::default()))?,
            b's' => {
                let pair = self.pop_n(2, op)?;
                self.extend_dict(pair, op)?;
            }
            b'u' => {
                let items = self.pop_mark(op)?;
                if items.len() % 2 != 0 {
                    return Err(format!(
                        "SETITEMS has {} values after its MARK, not key-value pairs",
                        items.len()
                    ));
                }
                self.extend_dict(items, op)?;
            }
            b'(' => {
                if self.marks.len() >= MAX_STACK {
                    return Err(format!("more than {MAX_STACK} open MARKs: nested too deeply"));
                }
                self.marks.push(self.stack.len());
            }
            b'q' => {
                let id = u32::from(self.bytes(1, op)?[0]);
                self.put(id, op)?;
            }
            b'r' => {
                let b = self.bytes(4, op)?;
                self.put(u32::from_le_bytes([b[0], b[1], b[2], b[3]]), op)?;
            }
            0x94 => {
                let id = u32::try_from(self.memo.len()).map_err(|_| "the memo is full")?;
                self.put(id, op)?;
            }
            b'h' => {
                let id = u32::from(self.bytes(1, op)?[0]);
                self.get(id)?;
            }
            b'j' => {
                let b = self.bytes(4, op)?;
                self.get(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
            }
            b'Q' => {
                let pid = self.pop(op)?;
                let storage = persistent_id(&pid)?;
                self.push(Value::Storage(Rc::new(storage)))?;
            }
            b'R' => {
                let args = self.pop(op)?;
                let callable = self.pop(op)?;
                let result = reduce(&callable, &args)?;
                self.push(result)?;
            }
            b'b' => {
                let state = self.pop(op)?;
                let target = self.pop(op)?;
                // `state_dict()` is an `OrderedDict` with a `_metadata` attribute (each module's
                // version), which pickles as BUILD with a dict: attributes, not entries. The
                // reader has no use for them.
                match (&target, &state) {
                    (Value::Dict(_), Value::Dict(_) | Value::None) => self.push(target)?,
                    _ => {
                        return Err(format!(
                            "BUILD sets the state of {} from {}: only an OrderedDict's attributes \
                             are expected in a state dict",
                            target.kind(),
                            state.kind()
                        ));
                    }
                }
            }
            other => {
                return Err(match opcode_name(other) {
                    Some(name) => format!(
                        "opcode {name} ({other:#04x}) is not in the subset of pickle that \
                         torch.save writes for a state dict"
                    ),
                    None => format!("unknown opcode {other:#04x}: not a pickle, or a damaged one"),
                });
            }
        }
        Ok(None)
    }

    fn charge(&mut self, units: usize) -> Step {
        self.work = self.work.saturating_add(units);
        if self.work > MAX_WORK {
            return Err(format!(
                "the pickle takes more than {MAX_WORK} steps (opcodes, values built or copied): \
                 far more than a state dict needs (a \"billion laughs\" file?)"
            ));
        }
        Ok(())
    }

    /// The next `n` bytes of the program, or an error naming the opcode that wanted them.
    fn bytes(&mut self, n: usize, op: u8) -> Step<&'a [u8]> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&end| end <= self.data.len()).ok_or_else(|| {
            format!(
                "the pickle ends inside {} (it needs {n} more bytes, {} are left): truncated?",
                opcode_name(op).unwrap_or("an opcode"),
                self.data.len() - start
            )
        })?;
        self.pos = end;
        let data: &'a [u8] = self.data;
        Ok(&data[start..end])
    }

    /// A string of `n` UTF-8 bytes.
    fn string(&mut self, n: usize, op: u8) -> Step<Value> {
        let b = self.bytes(n, op)?;
        let s = std::str::from_utf8(b).map_err(|e| format!("a string is not UTF-8: {e}"))?;
        Ok(Value::Str(s.into()))
    }

    /// A newline-terminated argument of `GLOBAL`.
    fn line(&mut self, op: u8) -> Step<String> {
        let rest = &self.data[self.pos..];
        let window = &rest[..rest.len().min(MAX_NAME + 1)];
        let Some(n) = window.iter().position(|&b| b == b'\n') else {
            return Err(if rest.len() <= MAX_NAME {
                format!(
                    "the pickle ends inside {} (truncated?)",
                    opcode_name(op).unwrap_or("an opcode")
                )
            } else {
                format!("a GLOBAL's name is longer than {MAX_NAME} bytes")
            });
        };
        let line = &rest[..n];
        self.pos += n + 1;
        Ok(String::from_utf8_lossy(line).into_owned())
    }

    fn push(&mut self, value: Value) -> Step {
        if self.stack.len() >= MAX_STACK {
            return Err(format!(
                "more than {MAX_STACK} values on the pickle's stack: nested too deeply or built \
                 to exhaust memory"
            ));
        }
        self.stack.push(value);
        Ok(())
    }

    /// The stack's floor: values below the innermost open mark belong to an outer level.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, op: u8) -> Step<Value> {
        if self.stack.len() <= self.floor() {
            return Err(underflow(op));
        }
        self.stack.pop().ok_or_else(|| underflow(op))
    }

    fn pop_n(&mut self, n: usize, op: u8) -> Step<Vec<Value>> {
        if self.stack.len() < self.floor() + n {
            return Err(underflow(op));
        }
        let items = self.stack.split_off(self.stack.len() - n);
        Ok(items)
    }

    fn pop_mark(&mut self, op: u8) -> Step<Vec<Value>> {
        let mark = self.marks.pop().ok_or_else(|| {
            format!("{} without a MARK before it", opcode_name(op).unwrap_or("an opcode"))
        })?;
        let items = self.stack.split_off(mark);
        self.charge(items.len())?;
        Ok(items)
    }

    /// The top of the stack, to change in place (`APPEND`, `SETITEM`).
    fn top(&mut self, op: u8) -> Step<&mut Value> {
        if self.stack.len() <= self.floor() {
            return Err(underflow(op));
        }
        self.stack.last_mut().ok_or_else(|| underflow(op))
    }

    fn extend_list(&mut self, items: Vec<Value>, op: u8) -> Step {
        let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
        check_depth(depth)?;
        let copied = match self.top(op)? {
            Value::List(list) => copy_cost(list, list.items.len()),
            other => {
                return Err(format!(
                    "{} on {}, not a list",
                    opcode_name(op).unwrap_or("?"),
                    other.kind()
                ));
            }
        };
        self.charge(copied)?;
        if let Value::List(list) = self.top(op)? {
            if Rc::strong_count(list) > 1 {
                // Copied to exactly its new length: `make_mut` would copy to the old length and
                // the extension then double the capacity, twice the memory a copy bomb needs.
                let mut copy = Vec::with_capacity(list.items.len() + items.len());
                copy.extend_from_slice(&list.items);
                *list = Rc::new(Seq { items: copy, depth: list.depth });
            }
            let list = Rc::make_mut(list);
            list.items.extend(items);
            list.depth = list.depth.max(depth);
        }
        Ok(())
    }

    fn extend_dict(&mut self, pairs: Vec<Value>, op: u8) -> Step {
        let depth = pairs.iter().map(Value::depth).max().unwrap_or(0) + 1;
        check_depth(depth)?;
        let copied = match self.top(op)? {
            Value::Dict(map) => copy_cost(map, map.entries.len()),
            other => {
                return Err(format!(
                    "{} on {}, not a dict",
                    opcode_name(op).unwrap_or("?"),
                    other.kind()
                ));
            }
        };
        self.charge(copied)?;
        if let Value::Dict(map) = self.top(op)? {
            if Rc::strong_count(map) > 1 {
                let mut copy = Vec::with_capacity(map.entries.len() + pairs.len() / 2);
                copy.extend_from_slice(&map.entries);
                *map = Rc::new(Map { entries: copy, depth: map.depth });
            }
            let map = Rc::make_mut(map);
            let mut pairs = pairs.into_iter();
            while let (Some(key), Some(value)) = (pairs.next(), pairs.next()) {
                map.entries.push((key, value));
            }
            map.depth = map.depth.max(depth);
        }
        Ok(())
    }

    fn put(&mut self, id: u32, op: u8) -> Step {
        let value = self.top(op)?.clone();
        let id = id as usize;
        if id >= MAX_MEMO {
            return Err(format!(
                "memo id {id} is beyond the {MAX_MEMO} entries of the pickle's memo this reader keeps"
            ));
        }
        if id >= self.memo.len() {
            self.charge(id + 1 - self.memo.len())?;
            self.memo.resize(id + 1, None);
        }
        self.memo[id] = Some(value);
        Ok(())
    }

    fn get(&mut self, id: u32) -> Step {
        let value = self
            .memo
            .get(id as usize)
            .and_then(Option::clone)
            .ok_or_else(|| format!("memo entry {id} was never stored"))?;
        self.push(value)
    }
}

/// What copying a shared container before changing it costs: its length, or nothing when this
/// is its only reference (then `Rc::make_mut` changes it in place).
fn copy_cost<T>(rc: &Rc<T>, len: usize) -> usize {
    if Rc::strong_count(rc) > 1 { len } else { 0 }
}

fn check_depth(depth: usize) -> Step {
    if depth > MAX_DEPTH {
        return Err(format!(
            "values nested more than {MAX_DEPTH} deep: a state dict nests a few levels"
        ));
    }
    Ok(())
}

fn underflow(op: u8) -> String {
    format!(
        "{} finds too few values on the pickle's stack (or takes them from below a MARK)",
        opcode_name(op).unwrap_or("an opcode")
    )
}

fn tuple(items: Vec<Value>) -> Step<Value> {
    let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
    check_depth(depth)?;
    Ok(Value::Tuple(Rc::new(Seq { items, depth })))
}

/// `LONG1`'s little-endian two's complement integer of up to 8 bytes.
fn long1(bytes: &[u8]) -> Step<i64> {
    if bytes.len() > 8 {
        return Err(format!("an integer of {} bytes does not fit 64 bits", bytes.len()));
    }
    let Some(&last) = bytes.last() else {
        return Ok(0);
    };
    let mut buf = if last & 0x80 == 0 { [0u8; 8] } else { [0xff; 8] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(i64::from_le_bytes(buf))
}

/// The globals a state dict may use; anything else is refused here, before it could be called.
fn resolve(module: &str, name: &str) -> Step<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => return Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => return Ok(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => return Ok(Global::RebuildParameter),
        ("torch._utils", "_rebuild_parameter_with_state") => {
            return Ok(Global::RebuildParameterWithState);
        }
        ("torch", storage)
            if storage.ends_with("Storage")
                && storage.len() <= 64
                && storage.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            return Ok(Global::StorageType(storage.into()));
        }
        _ => {}
    }
    let shown: String =
        format!("{module}.{name}").chars().take(120).flat_map(char::escape_debug).collect();
    let hint = if module.starts_with("__torch__") {
        "this is a TorchScript archive (torch.jit.save)"
    } else {
        "a model saved whole (torch.save(model)) names its classes"
    };
    Err(format!(
        "global `{shown}` is not allowed: a state dict uses only collections.OrderedDict, \
         torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and torch.*Storage, \
         and no other function is ever imported or called ({hint}: save model.state_dict() \
         with torch.save instead)"
    ))
}

/// A `BINPERSID`'s id: `('storage', torch.FloatStorage, '0', 'cuda:0', 900)`.
fn persistent_id(pid: &Value) -> Step<Storage> {
    let bad = || {
        format!(
            "a persistent id must be ('storage', torch.<Type>Storage, key, location, size), got {}",
            pid.kind()
        )
    };
    let Value::Tuple(t) = pid else { return Err(bad()) };
    let [
        Value::Str(tag),
        Value::Global(Global::StorageType(type_name)),
        Value::Str(key),
        Value::Str(_location),
        Value::Int(numel),
    ] = t.items.as_slice()
    else {
        return Err(bad());
    };
    if &**tag != "storage" {
        return Err(bad());
    }
    // The key names an archive entry: keep it to what torch writes (decimal numbers), so that
    // nothing odd reaches an entry name or a message.
    if key.is_empty()
        || key.len() > 64
        || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        let shown: String = key.chars().take(64).flat_map(char::escape_debug).collect();
        return Err(format!("storage key `{shown}` is not a simple name"));
    }
    Ok(Storage { type_name: type_name.clone(), key: key.clone(), numel: *numel })
}

/// `REDUCE`: calls one of the allowed globals.
fn reduce(callable: &Value, args: &Value) -> Step<Value> {
    let Value::Global(global) = callable else {
        return Err(format!("REDUCE calls {}, not a function", callable.kind()));
    };
    let Value::Tuple(args) = args else {
        return Err(format!(
            "REDUCE calls {global} with {}, not a tuple of arguments",
            args.kind()
        ));
    };
    let args = args.items.as_slice();
    match global {
        Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Rc::default())),
        Global::RebuildTensorV2 => rebuild_tensor(args),
        Global::RebuildParameter | Global::RebuildParameterWithState => match args {
            [tensor @ Value::Tensor(_), _requires_grad, _hooks]
            | [tensor @ Value::Tensor(_), _requires_grad, _hooks, _] => Ok(tensor.clone()),
            _ => Err(format!("{global} takes (tensor, requires_grad, hooks[, state])")),
        },
        _ => Err(format!(
            "{global} is called with {} arguments: not how torch.save uses it",
            args.len()
        )),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
/// metadata])`.
fn rebuild_tensor(args: &[Value]) -> Step<Value> {
    let usage = "_rebuild_tensor_v2 takes (storage, offset, size, stride, requires_grad, hooks[, metadata])";
    let (storage, offset, size, stride) = match args {
        [Value::Storage(s), Value::Int(o), size, stride, _, _]
        | [Value::Storage(s), Value::Int(o), size, stride, _, _, _] => (s, *o, size, stride),
        _ => {
            let kinds: Vec<String> = args.iter().map(Value::kind).collect();
            return Err(format!("{usage}, got ({})", kinds.join(", ")));
        }
    };
    let ints = |v: &Value, what: &str| -> Step<Vec<i64>> {
        let Value::Tuple(t) = v else {
            return Err(format!("{usage}: its {what} is {}, not a tuple of ints", v.kind()));
        };
        t.items
            .iter()
            .map(|i| match i {
                Value::Int(n) => Ok(*n),
                other => Err(format!("{usage}: its {what} holds {}, not an int", other.kind())),
            })
            .collect()
    };
    Ok(Value::Tensor(Rc::new(TensorSpec {
        storage: storage.clone(),
        offset,
        size: ints(size, "size")?,
        stride: ints(stride, "stride")?,
    })))
}

/// The names of all pickle opcodes (protocols 0 to 5), for messages about the ones refused.
fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PROTO 2`, then `body`, then `STOP`.
    fn program(body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend_from_slice(body);
        p.push(b'.');
        p
    }

    fn ok(body: &[u8]) -> Value {
        load(&program(body)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refused(body: &[u8]) -> String {
        match load(&program(body)) {
            Ok(v) => panic!("accepted as {}", v.kind()),
            Err(e) => e.to_string(),
        }
    }

    fn items(v: &Value) -> &[Value] {
        match v {
            Value::Tuple(s) | Value::List(s) => &s.items,
            other => panic!("{} is not a sequence", other.kind()),
        }
    }

    #[test]
    fn decodes_scalars_as_cpython_encodes_them() {
        let mut body = b"(K\xffM\xff\xffJ\xff\xff\xff\xff".to_vec();
        body.extend_from_slice(&[0x8a, 6, 0, 0, 0, 0, 0, 1]); // 2**40
        body.extend_from_slice(&[0x8a, 6, 0, 0, 0, 0, 0, 0xff]); // -(2**40)
        body.extend_from_slice(&[0x8a, 1, 0xff, 0x8a, 0]); // -1, 0
        body.extend_from_slice(b"G\x3f\xe0\0\0\0\0\0\0"); // 0.5, big-endian
        body.extend_from_slice(b"X\x02\0\0\0\xc3\xa9\x8c\x01zN\x88\x89t");
        let v = ok(&body);
        let got: Vec<String> = items(&v).iter().map(Value::kind).collect();
        assert_eq!(
            got,
            [
                "the int 255",
                "the int 65535",
                "the int -1",
                "the int 1099511627776",
                "the int -1099511627776",
                "the int -1",
                "the int 0",
                "the float 0.5",
                "the string \"é\"",
                "the string \"z\"",
                "None",
                "True",
                "False"
            ]
        );
        assert!(refused(&[0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1]).contains("does not fit 64 bits"));
    }

    #[test]
    fn memo_entries_keep_the_value_they_were_given() {
        // [1] is memoized, fetched and appended to: the copy changes, the memo's value does not
        // (and a list can never come to contain itself).
        let v = ok(b"](K\x01eq\x00h\x00K\x02ah\x00h\x00a\x87");
        let [first, second, third] = items(&v) else { panic!("three items") };
        assert_eq!(items(first).len(), 1);
        assert_eq!(items(second).len(), 2);
        assert_eq!(items(third).len(), 2);
        assert!(matches!(&items(third)[1], Value::List(inner) if inner.items.len() == 1));
    }

    #[test]
    fn values_below_a_mark_are_out_of_reach() {
        assert!(refused(b"]K\x01(K\x02a").contains("APPEND finds too few values"));
        assert!(refused(b"K\x01(\x86").contains("TUPLE2 finds too few values"));
        assert!(refused(b"t").contains("TUPLE without a MARK"));
        assert!(refused(b"K\x01K\x02a").contains("APPEND on the int 1, not a list"));
        assert!(refused(b"}K\x01s").contains("SETITEM finds too few values"));
        assert!(refused(b"h\x03").contains("memo entry 3 was never stored"));
    }

    #[test]
    fn depth_is_bounded_however_it_is_built() {
        let mut tuples = vec![b'N'];
        tuples.extend(std::iter::repeat_n(0x85, MAX_DEPTH));
        ok(&tuples);
        tuples.push(0x85);
        assert!(refused(&tuples).contains("nested more than 64 deep"));
        // Lists and dicts built by APPEND and SETITEM, one level at a time through the memo.
        for (start, wrap) in [(&b"]"[..], &b"]h\x00aq\x00"[..]), (b"}", b"}K\x01h\x00sq\x00")] {
            let mut body = start.to_vec();
            body.extend_from_slice(b"q\x00");
            for _ in 0..=MAX_DEPTH {
                // Drop the previous level (only the memo keeps it) by wrapping it in a tuple.
                body.extend_from_slice(wrap);
            }
            assert!(refused(&body).contains("nested more than 64 deep"));
        }
    }

    #[test]
    fn every_opcode_outside_the_subset_is_refused_by_name() {
        let supported = b"\x80\x95.c\x93KMJ\x8aGX\x8cN\x88\x89)\x85\x86\x87t]ae}su(qr\x94hjQRb";
        for op in 0..=255u8 {
            if supported.contains(&op) {
                continue;
            }
            let message = refused(&[op]);
            match opcode_name(op) {
                Some(name) => assert!(
                    message.contains(&format!("opcode {name} ({op:#04x}) is not in the subset")),
                    "{message}"
                ),
                None => {
                    assert!(message.contains(&format!("unknown opcode {op:#04x}")), "{message}");
                }
            }
        }
    }

    #[test]
    fn globals_outside_the_allowlist_are_refused_before_any_call() {
        for (module, name) in [
            ("os", "system"),
            ("posix", "system"),
            ("subprocess", "Popen"),
            ("builtins", "eval"),
            ("builtins", "exec"),
            ("builtins", "getattr"),
            ("__builtin__", "eval"),
            ("torch", "load"),
            ("torch._utils", "_rebuild_tensor"),
            ("torch.storage", "_load_from_bytes"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("collections", "defaultdict"),
            ("torch", "os.system"),
            ("torch", "Foo.Storage"),
            ("torch", "Foo Storage"),
        ] {
            let body = format!("c{module}\n{name}\n");
            let message = refused(body.as_bytes());
            assert!(message.contains("is not allowed"), "{module}.{name}: {message}");
        }
        // A storage type is only a marker in a persistent id: calling it is refused too.
        assert!(refused(b"ctorch\nFloatStorage\n)R").contains("torch.FloatStorage is called"));
    }

    #[test]
    fn a_real_state_dict_takes_little_work() {
        // mRNNTorch's flip-flop checkpoint: 8 tensors and the module metadata.
        let file = std::fs::File::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/flip_flop_rnn_leaky.pth"
        ))
        .unwrap();
        let mut zip = zip::ZipArchive::new(file).unwrap();
        let mut pkl = Vec::new();
        std::io::Read::read_to_end(
            &mut zip.by_name("flip_flop_rnn_leaky/data.pkl").unwrap(),
            &mut pkl,
        )
        .unwrap();
        let (value, work) = run(&pkl).unwrap();
        assert!(matches!(&value, Value::Dict(m) if m.entries.len() == 8), "{}", value.kind());
        assert!(work < 8 * 80, "{work} units of work");
    }
}
