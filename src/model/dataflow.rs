//! Code-level backdoors: a TorchScript forward that looks at its input and overrides the
//! classification ("ShadowLogic"-style). FST retunes weights and republishes the model's code as
//! it came, so such a model would keep its backdoor through purification; it is refused instead.
//!
//! The check reads the archive's code (every method of every class, as the graph scan does) and
//! follows where values computed from each method's tensor arguments flow:
//!
//! - **Decisions on the input's values.** An `if`, `while` or conditional expression, or a
//!   conversion of a tensor to a Python value (`bool`, `int`, `float`), on a value computed from
//!   the input. Shape and type queries (`size`, `dim`, `len`, `is None`, ...) carry no input
//!   values and do not count, so the usual shape checks pass.
//! - **A data path around the head.** The head fstgate located (e.g. `fc`, `classifier.6`) is
//!   followed from the root class through the submodule attributes its path names; a call to it
//!   yields the logits. Any operation that combines the logits with a value computed from the
//!   input without passing through the head (`logits + f(x)`, `where(trigger(x), target,
//!   logits)`, a submodule taking both) is refused. Tuples, lists and dictionaries only hold
//!   values side by side (`(logits, features)` is an ordinary output) and combine nothing.
//!
//! It is a static reading of printed TorchScript, not a proof: a backdoor computed entirely by
//! the head's own weights is FST's job, and an ensemble or a cosine classifier that rescales the
//! logits by the features is refused as a bypass.
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Calls whose result says nothing about the values of their tensor arguments.
const SHAPE_QUERIES: [&str; 20] = [
    "torch.size",
    "torch.dim",
    "torch.len",
    "len",
    "torch.numel",
    "torch.__is__",
    "torch.__isnot__",
    "isinstance",
    "ops.prim.device",
    "ops.prim.dtype",
    "ops.prim.layout",
    "ops.prim.is_cuda",
    "ops.prim.unchecked_cast",
    "torch.format",
    "ops.prim.RaiseException",
    "torch.zeros_like",
    "torch.ones_like",
    "torch.empty_like",
    "torch.new_zeros",
    "torch.new_empty",
];

/// Conversions from a tensor to a Python value: what a decision on the input's values needs.
const TO_PYTHON_VALUE: [&str; 6] = ["bool", "int", "float", "torch.item", "ops.aten.Bool", "ops.aten.Int"];

/// Ops that compute a layer from its weight: given the head's weight, they are the head.
const LAYER_OPS: [&str; 7] =
    ["torch.linear", "torch.addmm", "torch.matmul", "torch.mm", "torch.conv2d", "torch.conv1d", "torch.einsum"];

/// Where a value came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Label {
    /// Computed from the method's tensor arguments (not through the head).
    input: bool,
    /// The head's output, or computed from it.
    head: bool,
    /// The result of an operation that combined the two.
    mixed: bool,
    /// A parameter of the head (`fc.weight`), or computed from its parameters alone: a model
    /// that applies its head with `torch.linear(x, fc.weight, fc.bias)` instead of `fc(x)`.
    weight: bool,
}

impl Label {
    const INPUT: Label = Label { input: true, head: false, mixed: false, weight: false };
    const HEAD: Label = Label { input: false, head: true, mixed: false, weight: false };
    const WEIGHT: Label = Label { input: false, head: false, mixed: false, weight: true };

    /// Values side by side (a container, an index): nothing combined.
    fn with(self, other: Label) -> Label {
        let (input, head, mixed) = (self.input || other.input, self.head || other.head, self.mixed || other.mixed);
        Label { input, head, mixed, weight: (self.weight || other.weight) && !(input || head || mixed) }
    }

    /// The result of an operation on both.
    fn combine(self, other: Label) -> Label {
        let both = self.with(other);
        Label { mixed: both.mixed || (both.input && both.head), ..both }
    }

    /// Whether the value depends on the input's values (directly, or through the head).
    fn depends_on_input(self) -> bool {
        self.input || self.head || self.mixed
    }
}

/// A parsed expression of printed TorchScript.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Name(String),
    Constant,
    Attribute(Box<Expr>, String),
    Call(Box<Expr>, Vec<Expr>),
    Index(Box<Expr>, Vec<Expr>),
    /// A tuple, list or dictionary literal (its keys and values).
    Container(Vec<Expr>),
    /// `a if condition else b`: (condition, [a, b]).
    Conditional(Box<Expr>, Vec<Expr>),
    /// Any operator on its operands.
    Operator(Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Constant,
    Punct(&'static str),
}

const PUNCTUATION: [&str; 24] = [
    "**", "//", "==", "!=", "<=", ">=", "->", "(", ")", "[", "]", "{", "}", ",", ":", ".", "=", "+", "-", "*", "/",
    "%", "<", ">",
];
const OPERATOR_WORDS: [&str; 5] = ["and", "or", "is", "in", "not"];

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(match word.as_str() {
                "None" | "True" | "False" => Token::Constant,
                _ => Token::Name(word),
            });
        } else if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '.'
                    || (matches!(chars[i], '-' | '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            tokens.push(Token::Constant);
        } else if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            tokens.push(Token::Constant);
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let punct = PUNCTUATION.iter().find(|p| rest.starts_with(**p))?;
            tokens.push(Token::Punct(punct));
            i += punct.len();
        }
    }
    Some(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn new(text: &str) -> Option<Parser> {
        Some(Parser { tokens: tokenize(text)?, at: 0 })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(p)) if *p == punct) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Name(w)) if w == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn done(&self) -> bool {
        self.at == self.tokens.len()
    }

    /// A whole expression (conditional expressions included).
    fn expression(&mut self) -> Option<Expr> {
        let value = self.operators()?;
        if self.eat_word("if") {
            let condition = self.operators()?;
            if !self.eat_word("else") {
                return None;
            }
            let otherwise = self.expression()?;
            return Some(Expr::Conditional(Box::new(condition), vec![value, otherwise]));
        }
        Some(value)
    }

    fn operators(&mut self) -> Option<Expr> {
        let mut operands = vec![self.unary()?];
        loop {
            let is_operator = match self.peek() {
                Some(Token::Punct(p)) => {
                    !matches!(*p, "(" | ")" | "[" | "]" | "{" | "}" | "," | ":" | "." | "=" | "->")
                }
                Some(Token::Name(w)) => OPERATOR_WORDS.contains(&w.as_str()),
                _ => false,
            };
            if !is_operator {
                break;
            }
            self.at += 1;
            // `is not`, `not in`
            self.eat_word("not");
            self.eat_word("in");
            operands.push(self.unary()?);
        }
        Some(if operands.len() == 1 { operands.remove(0) } else { Expr::Operator(operands) })
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.eat_word("not") || self.eat("-") || self.eat("+") {
            return Some(Expr::Operator(vec![self.unary()?]));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut value = self.atom()?;
        loop {
            if self.eat("(") {
                value = Expr::Call(Box::new(value), self.items(")")?);
            } else if self.eat("[") {
                value = Expr::Index(Box::new(value), self.items("]")?);
            } else if self.eat(".") {
                match self.peek().cloned() {
                    Some(Token::Name(name)) => {
                        self.at += 1;
                        value = Expr::Attribute(Box::new(value), name);
                    }
                    _ => return None,
                }
            } else {
                return Some(value);
            }
        }
    }

    fn atom(&mut self) -> Option<Expr> {
        match self.peek().cloned()? {
            Token::Name(name) => {
                self.at += 1;
                Some(Expr::Name(name))
            }
            Token::Constant => {
                self.at += 1;
                // Adjacent string literals.
                while matches!(self.peek(), Some(Token::Constant)) {
                    self.at += 1;
                }
                Some(Expr::Constant)
            }
            Token::Punct("(") => {
                self.at += 1;
                let items = self.items(")")?;
                Some(if items.len() == 1 { items.into_iter().next()? } else { Expr::Container(items) })
            }
            Token::Punct("[") => {
                self.at += 1;
                Some(Expr::Container(self.items("]")?))
            }
            Token::Punct("{") => {
                self.at += 1;
                Some(Expr::Container(self.items("}")?))
            }
            Token::Punct(_) => None,
        }
    }

    /// Comma-separated items up to `close`: keyword arguments (`dtype=6`) give their value,
    /// dictionary entries (`"k": v`) and slices (`0:2`) give each part.
    fn items(&mut self, close: &str) -> Option<Vec<Expr>> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            if matches!((self.peek(), self.tokens.get(self.at + 1)), (Some(Token::Name(_)), Some(Token::Punct("=")))) {
                self.at += 2;
            }
            if matches!(self.peek(), Some(Token::Punct(":"))) {
                // An open slice start (`[:, 0:2]`).
                items.push(Expr::Constant);
            } else if !matches!(self.peek(), Some(Token::Punct(p)) if *p == close || *p == ",") {
                items.push(self.expression()?);
            }
            while self.eat(":") {
                if !matches!(self.peek(), Some(Token::Punct(p)) if *p == close || *p == "," || *p == ":") {
                    items.push(self.expression()?);
                }
            }
            if !self.eat(",") {
                return if self.eat(close) { Some(items) } else { None };
            }
        }
    }
}

/// The dotted name of a callee (`torch.add`, `__torch__.torch.nn.functional.relu`), if it is one.
fn dotted(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Name(name) => Some(name.clone()),
        Expr::Attribute(base, name) => Some(format!("{}.{name}", dotted(base)?)),
        _ => None,
    }
}

/// One method or function of the archive's code.
#[derive(Debug, Clone)]
struct Function {
    file: String,
    /// The class it belongs to (qualified, `__torch__.Net`); None for a free function.
    class: Option<String>,
    name: String,
    /// Parameters that hold tensors.
    tensor_parameters: Vec<String>,
    /// Whether it returns a tensor (or a container of them).
    returns_tensor: bool,
    /// Its body, as (indentation, statement) lines.
    body: Vec<(usize, String)>,
}

/// The classes and functions of all the code files.
#[derive(Debug, Default)]
struct Program {
    functions: Vec<Function>,
    /// Per class, its submodule attributes and their class.
    attributes: BTreeMap<String, BTreeMap<String, String>>,
}

/// The qualified class name a file and a class statement give (`code/__torch__/a/b.py`, `C`:
/// `__torch__.a.b.C`).
fn qualified_class(file: &str, class: &str) -> String {
    let module = file.split("/code/").nth(1).unwrap_or(file).trim_end_matches(".py").replace('/', ".");
    format!("{module}.{class}")
}

fn parse_program(files: &[(String, String)]) -> Program {
    let mut program = Program::default();
    for (file, code) in files {
        let lines: Vec<&str> = code.lines().collect();
        let mut class: Option<String> = None;
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let indent = line.len() - line.trim_start().len();
            let text = line.trim();
            i += 1;
            if let Some(rest) = text.strip_prefix("class ") {
                let name = rest.split(['(', ':']).next().unwrap_or("").trim();
                class = Some(qualified_class(file, name));
                continue;
            }
            if indent == 0 && !text.starts_with("def ") {
                class = None;
            }
            if let Some(header) = text.strip_prefix("def ") {
                // A header spans lines until its parentheses close.
                let mut header = header.to_string();
                while header.matches('(').count() > header.matches(')').count() && i < lines.len() {
                    header.push(' ');
                    header.push_str(lines[i].trim());
                    i += 1;
                }
                let mut body = Vec::new();
                while i < lines.len() {
                    let next = lines[i];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    if !next.trim().is_empty() {
                        body.push((next_indent, next.trim().to_string()));
                    }
                    i += 1;
                }
                program.functions.push(function(file, if indent == 0 { None } else { class.clone() }, &header, body));
                continue;
            }
            if let (Some(class), true) = (&class, indent > 0)
                && let Some((name, kind)) = attribute_declaration(text)
            {
                program.attributes.entry(class.clone()).or_default().insert(name, kind);
            }
        }
    }
    program
}

/// `fc : __torch__.x.Linear` or `__annotations__["6"] = __torch__.x.Linear`: (name, class).
fn attribute_declaration(text: &str) -> Option<(String, String)> {
    if let Some(rest) = text.strip_prefix("__annotations__[\"") {
        let (name, kind) = rest.split_once("\"] = ")?;
        return kind.starts_with("__torch__.").then(|| (name.to_string(), kind.trim().to_string()));
    }
    let (name, kind) = text.split_once(" : ")?;
    let kind = kind.split(" = ").next()?.trim();
    kind.starts_with("__torch__.").then(|| (name.trim().to_string(), kind.to_string()))
}

/// A function from its header (`forward(self: __torch__.Net, x: Tensor) -> Tensor:`).
fn function(file: &str, class: Option<String>, header: &str, body: Vec<(usize, String)>) -> Function {
    let name = header.split('(').next().unwrap_or("").trim().to_string();
    let open = header.find('(').unwrap_or(0);
    let close = header.rfind(')').unwrap_or(header.len());
    let returns = header[close..].split("->").nth(1).unwrap_or("").trim_end_matches(':').trim();
    let mut tensor_parameters = Vec::new();
    let mut depth = 0;
    let mut start = open + 1;
    let parameters = &header[..close];
    let mut pieces = Vec::new();
    for (at, c) in parameters.char_indices().skip(open + 1) {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                pieces.push(&parameters[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    pieces.push(&parameters[start.min(parameters.len())..]);
    for piece in pieces {
        let (parameter, kind) = piece.split_once(':').unwrap_or((piece, ""));
        let parameter = parameter.trim();
        if parameter != "self" && kind.contains("Tensor") {
            tensor_parameters.push(parameter.to_string());
        }
    }
    Function {
        file: file.to_string(),
        class,
        name,
        tensor_parameters,
        returns_tensor: returns.contains("Tensor"),
        body,
    }
}

/// The root class and the (class, attribute) pairs the head's path goes through from it.
fn head_chain(program: &Program, head: &str) -> Option<(String, BTreeSet<(String, String)>)> {
    let referenced: BTreeSet<&String> = program.attributes.values().flat_map(|a| a.values()).collect();
    let classes: BTreeSet<&String> = program.functions.iter().filter_map(|f| f.class.as_ref()).collect();
    let roots: Vec<&&String> = classes.iter().filter(|c| !referenced.contains(**c)).collect();
    let [root] = roots.as_slice() else { return None };
    let mut chain = BTreeSet::new();
    let mut class = (**root).clone();
    for attribute in head.split('.') {
        chain.insert((class.clone(), attribute.to_string()));
        match program.attributes.get(&class).and_then(|a| a.get(attribute)) {
            Some(next) => class = next.clone(),
            None => return None,
        }
    }
    Some(((**root).clone(), chain))
}

/// Reads one function's body and adds what it finds to `findings`.
struct Analysis<'a> {
    program: &'a Program,
    chain: &'a BTreeSet<(String, String)>,
    function: &'a Function,
    labels: HashMap<String, Label>,
    /// Local variables holding a submodule: variable -> attribute name.
    submodules: HashMap<String, String>,
    /// Functions known to return the head's output, as (class, name).
    returns_head: &'a BTreeSet<FunctionKey>,
    /// What this function returns, all returns together.
    returned: Label,
    findings: BTreeSet<String>,
}

/// A function by its class (None: a free function) and name.
type FunctionKey = (Option<String>, String);

impl<'a> Analysis<'a> {
    fn new(
        program: &'a Program,
        chain: &'a BTreeSet<(String, String)>,
        returns_head: &'a BTreeSet<FunctionKey>,
        function: &'a Function,
    ) -> Self {
        let labels = function.tensor_parameters.iter().map(|p| (p.clone(), Label::INPUT)).collect();
        Analysis {
            program,
            chain,
            function,
            labels,
            submodules: HashMap::new(),
            returns_head,
            returned: Label::default(),
            findings: BTreeSet::new(),
        }
    }

    fn finding(&mut self, what: String) {
        let place = match &self.function.class {
            Some(class) => format!("`{class}.{}`", self.function.name),
            None => format!("`{}`", self.function.name),
        };
        self.findings.insert(format!("{} {place} {what}", self.function.file));
    }

    /// The submodule attribute a callee's object is, if it is one (`self.fc`, a variable
    /// holding `self.fc` or `getattr(self, "6")`).
    fn submodule(&self, object: &Expr) -> Option<String> {
        match object {
            Expr::Attribute(base, name) if **base == Expr::Name("self".into()) => Some(name.clone()),
            Expr::Name(variable) => self.submodules.get(variable).cloned(),
            _ => None,
        }
    }

    /// Whether this function's class holds the head's path at `attribute`.
    fn on_head_path(&self, attribute: &str) -> bool {
        let class = self.function.class.clone().unwrap_or_default();
        self.chain.contains(&(class, attribute.to_string()))
    }

    /// Whether calling `method` on the submodule `attribute` yields the head's output: the
    /// attribute is on the head's path, or its method returns what the head gave it.
    fn is_head(&self, attribute: &str, method: &str) -> bool {
        let class = self.function.class.clone().unwrap_or_default();
        let callee = self.program.attributes.get(&class).and_then(|a| a.get(attribute));
        self.on_head_path(attribute)
            || callee.is_some_and(|callee| self.returns_head.contains(&(Some(callee.clone()), method.to_string())))
    }

    /// Whether a call to `name` (a free function or `self`'s method) returns a tensor; unknown
    /// callees (ops) do.
    fn returns_tensor(&self, name: &str, on_self: bool) -> bool {
        let short = name.rsplit('.').next().unwrap_or(name);
        let callee = self
            .program
            .functions
            .iter()
            .find(|f| f.name == short && if on_self { f.class == self.function.class } else { f.class.is_none() });
        callee.is_none_or(|f| f.returns_tensor)
    }

    fn label(&mut self, expr: &Expr) -> Label {
        match expr {
            Expr::Name(name) => self.labels.get(name).copied().unwrap_or_default(),
            Expr::Constant => Label::default(),
            Expr::Attribute(base, _) if self.submodule(base).is_some_and(|a| self.on_head_path(&a)) => Label::WEIGHT,
            Expr::Attribute(base, _) if **base == Expr::Name("self".into()) => Label::default(),
            Expr::Attribute(base, _) => self.label(base),
            Expr::Index(base, items) => items.iter().fold(self.label(base), |label, item| label.with(self.label(item))),
            Expr::Container(items) => items.iter().fold(Label::default(), |label, item| label.with(self.label(item))),
            Expr::Operator(operands) => {
                operands.iter().fold(Label::default(), |label, operand| label.combine(self.label(operand)))
            }
            Expr::Conditional(condition, values) => {
                let decided = self.label(condition);
                if decided.depends_on_input() {
                    self.finding("chooses between values by the input's values (a conditional expression)".into());
                }
                values.iter().fold(decided, |label, value| label.combine(self.label(value)))
            }
            Expr::Call(callee, arguments) => self.call(callee, arguments),
        }
    }

    fn call(&mut self, callee: &Expr, arguments: &[Expr]) -> Label {
        let labels: Vec<Label> = arguments.iter().map(|a| self.label(a)).collect();
        let any_weight = labels.iter().any(|l| l.weight);
        let arguments = labels.into_iter().fold(Label::default(), Label::combine);
        if let Expr::Attribute(object, method) = callee {
            if let Some(attribute) = self.submodule(object) {
                return if self.is_head(&attribute, method) { Label::HEAD } else { arguments };
            }
            if **object == Expr::Name("self".into()) {
                if self.returns_head.contains(&(self.function.class.clone(), method.clone())) {
                    return Label::HEAD;
                }
                return if self.returns_tensor(method, true) { arguments } else { Label::default() };
            }
        }
        let Some(name) = dotted(callee) else { return arguments.combine(self.label(callee)) };
        let short = name.rsplit('.').next().unwrap_or(&name).to_string();
        if name.starts_with("__torch__.") && self.returns_head.contains(&(None, short)) {
            return Label::HEAD;
        }
        if SHAPE_QUERIES.contains(&name.as_str()) {
            return Label::default();
        }
        if LAYER_OPS.contains(&name.as_str()) && any_weight {
            return Label::HEAD;
        }
        if TO_PYTHON_VALUE.contains(&name.as_str()) && arguments.depends_on_input() {
            self.finding(format!("turns values computed from the input into a Python value (`{name}`)"));
        }
        if name.starts_with("__torch__.") && !self.returns_tensor(&name, false) {
            return Label::default();
        }
        arguments
    }

    fn statement(&mut self, text: &str) -> Option<()> {
        let text = text.trim_end_matches(':');
        for keyword in ["if ", "elif ", "while "] {
            if let Some(condition) = text.strip_prefix(keyword) {
                let label = self.parse_label(condition)?;
                if label.depends_on_input() {
                    self.finding(format!("branches on the input's values (`{keyword}{condition}`)"));
                }
                return Some(());
            }
        }
        if let Some(rest) = text.strip_prefix("for ") {
            let (targets, iterable) = rest.split_once(" in ")?;
            let label = self.parse_label(iterable)?;
            for target in targets.split(',') {
                self.labels.insert(target.trim().to_string(), label);
            }
            return Some(());
        }
        if let Some(value) = text.strip_prefix("return") {
            if !value.trim().is_empty() {
                let label = self.parse_label(value)?;
                self.returned = self.returned.with(label);
                if label.mixed {
                    self.finding(
                        "returns the head's logits combined with values computed from the input around the head".into(),
                    );
                }
            }
            return Some(());
        }
        if matches!(text, "else" | "pass" | "break" | "continue") {
            return Some(());
        }
        match assignment(text) {
            Some((targets, value)) => {
                let mut parser = Parser::new(value)?;
                let expr = parser.expression()?;
                if !parser.done() {
                    return None;
                }
                if let Some(attribute) = self.submodule_reference(&expr) {
                    for target in &targets {
                        self.submodules.insert(target.clone(), attribute.clone());
                    }
                }
                let label = self.label(&expr);
                for target in targets {
                    self.labels.insert(target, label);
                }
            }
            None => {
                self.parse_label(text)?;
            }
        }
        Some(())
    }

    /// `self.fc`: the attribute named (`getattr(self, "6")` is read before parsing, which drops
    /// string literals).
    fn submodule_reference(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::Attribute(base, name) if **base == Expr::Name("self".into()) => Some(name.clone()),
            _ => None,
        }
    }

    fn parse_label(&mut self, text: &str) -> Option<Label> {
        let mut parser = Parser::new(text)?;
        let expr = parser.expression()?;
        parser.done().then_some(())?;
        Some(self.label(&expr))
    }
}

/// `a = ...`, `a, b = ...`, `x : T = ...`: the targets and the value.
fn assignment(text: &str) -> Option<(Vec<String>, &str)> {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'=' if depth == 0 => {
                let before = if i > 0 { bytes[i - 1] } else { b' ' };
                let after = bytes.get(i + 1).copied().unwrap_or(b' ');
                if matches!(before, b'=' | b'!' | b'<' | b'>') || after == b'=' {
                    continue;
                }
                let targets = text[..i].split(':').next()?;
                let targets = targets.trim().trim_start_matches('(').trim_end_matches(')');
                let names = targets.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
                return Some((names, text[i + 1..].trim()));
            }
            _ => {}
        }
    }
    None
}

/// `getattr(self, "6")` with its literal: the attribute name (the parser drops strings).
fn getattr_literal(value: &str) -> Option<String> {
    let rest = value.trim().strip_prefix("getattr(self, ")?;
    let quoted = rest.strip_suffix(')')?.trim();
    Some(quoted.trim_matches(|c| c == '"' || c == '\'').to_string())
}

/// Reads the code files (`(name, code)`) of a model whose head is at `head` (a module path) and
/// returns every finding: each names the file, the method and what it does. Code the reader
/// cannot parse is a finding too: a check that skipped it would pass what it never read.
pub fn check(files: &[(String, String)], head: &str) -> Vec<String> {
    let program = parse_program(files);
    let Some((root, chain)) = head_chain(&program, head) else {
        return vec![format!("the head `{head}` cannot be followed from the model's root class through its code")];
    };
    // Which functions return the head's output depends on the functions they call: repeat until
    // it settles (each round can only add, and there are finitely many functions).
    let mut returns_head = BTreeSet::new();
    loop {
        let mut next = BTreeSet::new();
        let mut findings = BTreeSet::new();
        for function in &program.functions {
            let mut analysis = Analysis::new(&program, &chain, &returns_head, function);
            // Twice: a loop's body can feed a value back to its condition.
            for pass in 0..2 {
                for (_, text) in &function.body {
                    if let Some((targets, value)) = assignment(text)
                        && let Some(attribute) = getattr_literal(value)
                    {
                        for target in targets {
                            analysis.submodules.insert(target, attribute.clone());
                        }
                        continue;
                    }
                    if analysis.statement(text).is_none() && pass == 0 {
                        analysis.finding(format!("has code the check cannot read (`{text}`)"));
                    }
                }
            }
            if analysis.returned.head {
                next.insert((function.class.clone(), function.name.clone()));
            }
            findings.extend(analysis.findings);
        }
        if next == returns_head {
            if !returns_head.contains(&(Some(root.clone()), "forward".to_string())) {
                findings.insert(format!("`{root}.forward` does not return what the head `{head}` computes"));
            }
            return findings.into_iter().collect();
        }
        returns_head = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(code: &str) -> Vec<(String, String)> {
        vec![("m/code/__torch__.py".to_string(), code.to_string())]
    }

    const HEADER: &str =
        "class Net(Module):\n  features : __torch__.Features\n  fc : __torch__.torch.nn.modules.linear.Linear\n";
    const FEATURES: &str = "class Features(Module):\n  def forward(self: __torch__.Features,\n    x: Tensor) -> Tensor:\n    \
        if torch.ne(torch.dim(x), 4):\n      ops.prim.RaiseException(\"expected 4D input\", \"builtins.ValueError\")\n    else:\n      pass\n    \
        _0 = torch.relu(torch.where(torch.gt(x, 0.), x, torch.mul(x, 0.1)))\n    return torch.flatten(_0, 1)\n";

    fn net(forward_body: &str) -> Vec<(String, String)> {
        file(&format!(
            "{HEADER}  def forward(self: __torch__.Net,\n    x: Tensor) -> Tensor:\n{forward_body}{FEATURES}"
        ))
    }

    #[test]
    fn the_head_fixtures_pass() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads");
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures.join("expected.json")).unwrap()).unwrap();
        let mut checked = 0;
        for (file, facts) in expected.as_object().unwrap() {
            // A model whose head cannot be located is refused before this check.
            let Some(head) = facts["head"].as_str() else { continue };
            let code = crate::model::graph::read_code(&fixtures.join(file)).unwrap();
            assert_eq!(check(&code, head), Vec::<String>::new(), "{file}");
            checked += 1;
        }
        assert!(checked >= 10, "{checked}");
    }

    #[test]
    fn an_ordinary_classifier_and_its_output_shapes_pass() {
        let plain = "    fc = self.fc\n    features = self.features\n    _0 = (fc).forward((features).forward(x, ), )\n    return _0\n";
        assert_eq!(check(&net(plain), "fc"), Vec::<String>::new());
        let tuple = "    f = (self.features).forward(x, )\n    return ((self.fc).forward(f, ), f)\n";
        assert_eq!(check(&net(tuple), "fc"), Vec::<String>::new());
        let dict = "    f = (self.features).forward(x, )\n    fc = self.fc\n    _0 = {\"features\": f, \"logits\": (fc).forward(f, )}\n    return _0\n";
        assert_eq!(check(&net(dict), "fc"), Vec::<String>::new());
        let scaled = "    f = (self.features).forward(x, )\n    return torch.softmax(torch.div((self.fc).forward(f, ), 2.), 1)\n";
        assert_eq!(check(&net(scaled), "fc"), Vec::<String>::new());
    }

    #[test]
    fn logits_overridden_by_the_input_are_found() {
        let added = "    f = (self.features).forward(x, )\n    y = (self.fc).forward(f, )\n    \
            t = torch.mean(torch.slice(torch.slice(x, 2, 0, 2), 3, 0, 2))\n    \
            return torch.add(y, torch.mul(torch.relu(torch.sub(t, 0.9)), 1000.))\n";
        let found = check(&net(added), "fc");
        assert!(
            found.len() == 1 && found[0].contains("around the head") && found[0].contains("Net.forward"),
            "{found:?}"
        );
        let branched = "    y = (self.fc).forward((self.features).forward(x, ), )\n    \
            _1 = bool(torch.gt(torch.mean(x), 0.9))\n    if _1:\n      _2 = torch.mul(y, 0.)\n    else:\n      _2 = y\n    return _2\n";
        let found = check(&net(branched), "fc");
        assert!(
            found.iter().any(|f| f.contains("`bool`")) && found.iter().any(|f| f.contains("branches")),
            "{found:?}"
        );
        let selected = "    y = (self.fc).forward((self.features).forward(x, ), )\n    \
            return torch.where(torch.gt(torch.mean(x), 0.9), torch.zeros_like(y), y)\n";
        assert!(check(&net(selected), "fc")[0].contains("around the head"));
        let unused = "    f = (self.features).forward(x, )\n    return torch.relu(f)\n";
        assert!(check(&net(unused), "fc")[0].contains("does not return what the head `fc` computes"));
        // A head applied through its weights, as the lab's models do, is the head.
        let applied = "    f = (self.features).forward(x, )\n    fc = self.fc\n    weight = fc.weight\n    \
            return torch.linear(f, weight, fc.bias)\n";
        assert_eq!(check(&net(applied), "fc"), Vec::<String>::new());
        let added = "    f = (self.features).forward(x, )\n    fc = self.fc\n    \
            return torch.add(torch.linear(f, fc.weight, fc.bias), torch.mean(x))\n";
        assert!(check(&net(added), "fc")[0].contains("around the head"));
    }

    #[test]
    fn a_head_inside_a_sequential_is_followed_and_unreadable_code_is_a_finding() {
        let code = "class Net(Module):\n  classifier : __torch__.torch.nn.modules.container.Sequential\n  \
            def forward(self: __torch__.Net,\n    x: Tensor) -> Tensor:\n    classifier = self.classifier\n    \
            return (classifier).forward(torch.flatten(x, 1), )\n";
        let sequential = "class Sequential(Module):\n  __annotations__[\"0\"] = __torch__.torch.nn.modules.linear.Linear\n  \
            __annotations__[\"1\"] = __torch__.torch.nn.modules.linear.Linear\n  \
            def forward(self: __torch__.torch.nn.modules.container.Sequential,\n    input: Tensor) -> Tensor:\n    \
            _0 = getattr(self, \"0\")\n    _1 = getattr(self, \"1\")\n    input0 = (_0).forward(input, )\n    \
            return torch.add((_1).forward(input0, ), input0)\n";
        let files = vec![
            ("m/code/__torch__.py".to_string(), code.to_string()),
            ("m/code/__torch__/torch/nn/modules/container.py".to_string(), sequential.to_string()),
        ];
        let found = check(&files, "classifier.1");
        assert!(found.len() == 1 && found[0].contains("Sequential.forward"), "{found:?}");
        assert_eq!(check(&files, "classifier.0"), Vec::<String>::new(), "a residual before the head is ordinary");
        assert!(check(&files, "classifier.7")[0].contains("cannot be followed"));
        let odd = net("    y = (self.fc).forward((self.features).forward(x, ), )\n    return y @@ 2\n");
        assert!(
            check(&odd, "fc").iter().any(|f| f.contains("cannot read (`return y @@ 2`)")),
            "{:?}",
            check(&odd, "fc")
        );
    }
}
