//! The tokenizer and recursive-descent parser of the Logs Insights subset (see the module docs).

use super::{Agg, AggFn, ArithOp, CmpOp, Command, Expr, Malformed, Matcher, Named};
use regex::Regex;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A field name (`attributes.session.id`, `@timestamp`, a backtick-quoted name) or a
    /// keyword; `quoted` is true for backticks, which are never keywords.
    Ident {
        name: String,
        quoted: bool,
    },
    Str(String),
    Regex(String),
    Int(i64),
    Float(f64),
    Pipe,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
}

/// A token and the byte range of the query it came from (for unaliased result names).
#[derive(Debug, Clone)]
struct Spanned {
    tok: Tok,
    start: usize,
    end: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '@' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '@' || c == '$'
}

/// Whether a `/` after `prev` divides (after an operand) or opens a regex literal.
fn divides_after(prev: Option<&Tok>, before: Option<&Tok>) -> bool {
    match prev {
        Some(Tok::Ident { name, quoted }) => {
            // `parse @message /re/`: the pattern follows the parsed field.
            if matches!(before, Some(Tok::Ident { name: b, quoted: false }) if b.eq_ignore_ascii_case("parse"))
            {
                return false;
            }
            *quoted || !is_keyword(name)
        }
        Some(Tok::Str(_) | Tok::Int(_) | Tok::Float(_) | Tok::RParen | Tok::RBracket) => true,
        _ => false,
    }
}

const KEYWORDS: &[&str] = &[
    "and", "or", "not", "like", "in", "as", "by", "asc", "desc", "fields", "filter", "parse",
    "stats", "sort", "limit",
];

fn is_keyword(s: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
}

fn lex(q: &str) -> Result<Vec<Spanned>, Malformed> {
    let mut out: Vec<Spanned> = Vec::new();
    let chars: Vec<(usize, char)> = q.char_indices().collect();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let pos = |i: usize| chars.get(i).map_or(q.len(), |&(p, _)| p);
    while let Some(c) = at(i) {
        let start = pos(i);
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match at(i) {
                    None => return Err(Malformed::at(start, "unterminated string")),
                    Some('\\') => {
                        match at(i + 1) {
                            Some(n) => s.push(n),
                            None => return Err(Malformed::at(start, "unterminated string")),
                        }
                        i += 2;
                    }
                    Some(ch) if ch == c => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            Tok::Str(s)
        } else if c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                match at(i) {
                    None => return Err(Malformed::at(start, "unterminated backtick name")),
                    Some('`') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            Tok::Ident {
                name: s,
                quoted: true,
            }
        } else if c == '/'
            && !divides_after(
                out.last().map(|s| &s.tok),
                out.len()
                    .checked_sub(2)
                    .and_then(|k| out.get(k))
                    .map(|s| &s.tok),
            )
        {
            let mut s = String::new();
            i += 1;
            loop {
                match at(i) {
                    None => return Err(Malformed::at(start, "unterminated regular expression")),
                    Some('\\') if at(i + 1) == Some('/') => {
                        s.push('/');
                        i += 2;
                    }
                    Some('/') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            Tok::Regex(s)
        } else if c.is_ascii_digit() {
            let mut j = i;
            while at(j).is_some_and(|d| d.is_ascii_digit()) {
                j += 1;
            }
            let float = at(j) == Some('.') && at(j + 1).is_some_and(|d| d.is_ascii_digit());
            if float {
                j += 1;
                while at(j).is_some_and(|d| d.is_ascii_digit()) {
                    j += 1;
                }
            }
            let text = &q[start..pos(j)];
            i = j;
            if float {
                Tok::Float(
                    text.parse()
                        .map_err(|_| Malformed::at(start, "bad number"))?,
                )
            } else {
                match text.parse::<i64>() {
                    Ok(n) => Tok::Int(n),
                    Err(_) => Tok::Float(
                        text.parse()
                            .map_err(|_| Malformed::at(start, "bad number"))?,
                    ),
                }
            }
        } else if is_ident_start(c) {
            let mut j = i;
            while at(j).is_some_and(is_ident_char) {
                j += 1;
            }
            let name = q[start..pos(j)].to_owned();
            i = j;
            Tok::Ident {
                name,
                quoted: false,
            }
        } else {
            let two = (c, at(i + 1));
            let (tok, len) = match two {
                ('!', Some('=')) => (Tok::Ne, 2),
                ('<', Some('=')) => (Tok::Le, 2),
                ('>', Some('=')) => (Tok::Ge, 2),
                ('=', Some('=')) => (Tok::Eq, 2),
                ('|', _) => (Tok::Pipe, 1),
                (',', _) => (Tok::Comma, 1),
                ('(', _) => (Tok::LParen, 1),
                (')', _) => (Tok::RParen, 1),
                ('[', _) => (Tok::LBracket, 1),
                (']', _) => (Tok::RBracket, 1),
                ('=', _) => (Tok::Eq, 1),
                ('<', _) => (Tok::Lt, 1),
                ('>', _) => (Tok::Gt, 1),
                ('+', _) => (Tok::Plus, 1),
                ('-', _) => (Tok::Minus, 1),
                ('*', _) => (Tok::Star, 1),
                ('/', _) => (Tok::Slash, 1),
                ('%', _) => (Tok::Percent, 1),
                _ => return Err(Malformed::at(start, format!("unexpected character {c:?}"))),
            };
            i += len;
            tok
        };
        out.push(Spanned {
            tok,
            start,
            end: pos(i),
        });
    }
    Ok(out)
}

struct Parser<'q> {
    src: &'q str,
    toks: Vec<Spanned>,
    i: usize,
}

/// Parses a whole query.
pub(super) fn parse(src: &str) -> Result<Vec<Command>, Malformed> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, i: 0 };
    let mut commands = Vec::new();
    loop {
        if p.peek().is_none() {
            if commands.is_empty() {
                return Err(Malformed::at(0, "the query is empty"));
            }
            return Err(Malformed::at(src.len(), "a command is missing after '|'"));
        }
        commands.push(p.command()?);
        match p.peek() {
            None => break,
            Some(Tok::Pipe) => {
                p.i += 1;
            }
            Some(_) => return Err(p.unexpected("'|' or the end of the query")),
        }
    }
    Ok(commands)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|s| &s.tok)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.i).map_or(self.src.len(), |s| s.start)
    }

    fn unexpected(&self, wanted: &str) -> Malformed {
        match self.toks.get(self.i) {
            Some(s) => Malformed::at(
                s.start,
                format!("expected {wanted}, found {:?}", &self.src[s.start..s.end]),
            ),
            None => Malformed::at(self.src.len(), format!("expected {wanted}")),
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident { name, quoted: false }) if name.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let yes = self.keyword(kw);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn eat(&mut self, t: &Tok) -> bool {
        let yes = self.peek() == Some(t);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), Malformed> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    /// A name after `as`, `parse ... as` or a field position.
    fn name(&mut self) -> Result<String, Malformed> {
        match self.peek() {
            Some(Tok::Ident { name, quoted }) if *quoted || !is_keyword(name) => {
                let n = name.clone();
                self.i += 1;
                Ok(n)
            }
            _ => Err(self.unexpected("a field name")),
        }
    }

    fn command(&mut self) -> Result<Command, Malformed> {
        let at = self.offset();
        let Some(Tok::Ident {
            name,
            quoted: false,
        }) = self.peek().cloned()
        else {
            return Err(self.unexpected("a command"));
        };
        self.i += 1;
        match name.to_ascii_lowercase().as_str() {
            "fields" => Ok(Command::Fields(self.named_list(Self::expr)?)),
            "filter" => Ok(Command::Filter(self.expr()?)),
            "parse" => self.parse_command(),
            "stats" => self.stats(),
            "sort" => {
                let mut keys = Vec::new();
                loop {
                    let e = self.expr()?;
                    let desc = if self.eat_keyword("desc") {
                        true
                    } else {
                        self.eat_keyword("asc");
                        false
                    };
                    keys.push((e, desc));
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                Ok(Command::Sort(keys))
            }
            "limit" => match self.peek() {
                Some(Tok::Int(n)) if *n > 0 => {
                    let n = usize::try_from(*n).unwrap_or(usize::MAX);
                    self.i += 1;
                    Ok(Command::Limit(n))
                }
                _ => Err(self.unexpected("a positive number")),
            },
            other => Err(Malformed::at(
                at,
                format!(
                    "{other:?} is not a command this server supports (fields, filter, parse, stats, sort, limit)"
                ),
            )),
        }
    }

    /// `item [as name], ...`; an unaliased item is named by its text in the query.
    fn named_list(
        &mut self,
        item: fn(&mut Self) -> Result<Expr, Malformed>,
    ) -> Result<Vec<Named>, Malformed> {
        let mut out = Vec::new();
        loop {
            let start = self.offset();
            let e = item(self)?;
            let end = self
                .toks
                .get(self.i.saturating_sub(1))
                .map_or(self.src.len(), |s| s.end);
            let name = if self.eat_keyword("as") {
                self.name()?
            } else if let Expr::Field(f) = &e {
                f.clone()
            } else {
                self.src[start..end].trim().to_owned()
            };
            out.push(Named { expr: e, name });
            if !self.eat(&Tok::Comma) {
                return Ok(out);
            }
        }
    }

    fn parse_command(&mut self) -> Result<Command, Malformed> {
        let field = self.name()?;
        let at = self.offset();
        match self.peek().cloned() {
            Some(Tok::Str(glob)) => {
                self.i += 1;
                if !self.eat_keyword("as") {
                    return Err(self.unexpected("'as' after the parse pattern"));
                }
                let mut names = vec![self.name()?];
                while self.eat(&Tok::Comma) {
                    names.push(self.name()?);
                }
                let stars = glob.matches('*').count();
                if stars != names.len() {
                    return Err(Malformed::at(
                        at,
                        format!(
                            "the pattern has {stars} '*' but {} names follow 'as'",
                            names.len()
                        ),
                    ));
                }
                let mut re = String::new();
                let parts: Vec<&str> = glob.split('*').collect();
                for (k, part) in parts.iter().enumerate() {
                    re.push_str(&regex::escape(part));
                    if k + 1 < parts.len() {
                        // Lazy, as CloudWatch's glob: `runtime/*/` stops at the first `/`; a
                        // trailing `*` takes the rest.
                        re.push_str(if k + 2 == parts.len() && parts[k + 1].is_empty() {
                            "(.*)"
                        } else {
                            "(.*?)"
                        });
                    }
                }
                let re = Regex::new(&format!("(?s){re}"))
                    .map_err(|e| Malformed::at(at, format!("bad pattern: {e}")))?;
                Ok(Command::Parse {
                    field,
                    regex: re,
                    names,
                })
            }
            Some(Tok::Regex(src)) => {
                self.i += 1;
                let re = Regex::new(&src)
                    .map_err(|e| Malformed::at(at, format!("bad regular expression: {e}")))?;
                let names: Vec<String> = re.capture_names().flatten().map(str::to_owned).collect();
                if names.is_empty() {
                    return Err(Malformed::at(
                        at,
                        "a parse regular expression needs named groups (?<name>...)",
                    ));
                }
                Ok(Command::Parse {
                    field,
                    regex: re,
                    names,
                })
            }
            _ => Err(self.unexpected("a quoted glob pattern or a /regular expression/")),
        }
    }

    fn stats(&mut self) -> Result<Command, Malformed> {
        let mut aggs = Vec::new();
        loop {
            let start = self.offset();
            let agg = self.aggregate()?;
            let end = self
                .toks
                .get(self.i.saturating_sub(1))
                .map_or(self.src.len(), |s| s.end);
            let name = if self.eat_keyword("as") {
                self.name()?
            } else {
                self.src[start..end].trim().to_owned()
            };
            aggs.push((agg, name));
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        let by = if self.eat_keyword("by") {
            self.named_list(Self::expr)?
        } else {
            Vec::new()
        };
        Ok(Command::Stats { aggs, by })
    }

    fn aggregate(&mut self) -> Result<Agg, Malformed> {
        let at = self.offset();
        let f = match self.peek() {
            Some(Tok::Ident {
                name,
                quoted: false,
            }) => match name.to_ascii_lowercase().as_str() {
                "count" => AggFn::Count,
                "count_distinct" => AggFn::CountDistinct,
                "sum" => AggFn::Sum,
                "min" => AggFn::Min,
                "max" => AggFn::Max,
                "avg" => AggFn::Avg,
                other => {
                    return Err(Malformed::at(
                        at,
                        format!(
                            "{other:?} is not a stats function this server supports (count, count_distinct, sum, min, max, avg)"
                        ),
                    ));
                }
            },
            _ => return Err(self.unexpected("a stats function")),
        };
        self.i += 1;
        self.expect(&Tok::LParen, "'('")?;
        let arg =
            if f == AggFn::Count && (self.eat(&Tok::Star) || self.peek() == Some(&Tok::RParen)) {
                None
            } else {
                Some(self.expr()?)
            };
        self.expect(&Tok::RParen, "')'")?;
        Ok(Agg { f, arg })
    }

    fn expr(&mut self) -> Result<Expr, Malformed> {
        let mut left = self.and_expr()?;
        while self.eat_keyword("or") {
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, Malformed> {
        let mut left = self.not_expr()?;
        while self.eat_keyword("and") {
            let right = self.not_expr()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr, Malformed> {
        if self.eat_keyword("not") {
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, Malformed> {
        let left = self.additive()?;
        let op = match self.peek() {
            Some(Tok::Eq) => Some(CmpOp::Eq),
            Some(Tok::Ne) => Some(CmpOp::Ne),
            Some(Tok::Lt) => Some(CmpOp::Lt),
            Some(Tok::Gt) => Some(CmpOp::Gt),
            Some(Tok::Le) => Some(CmpOp::Le),
            Some(Tok::Ge) => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.i += 1;
            let right = self.additive()?;
            return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
        }
        let negated = self.keyword("not")
            && matches!(self.toks.get(self.i + 1).map(|s| &s.tok),
                Some(Tok::Ident { name, quoted: false })
                    if name.eq_ignore_ascii_case("like") || name.eq_ignore_ascii_case("in"));
        if negated {
            self.i += 1;
        }
        let wrap = |e: Expr| if negated { Expr::Not(Box::new(e)) } else { e };
        if self.eat_keyword("like") {
            let at = self.offset();
            let m = match self.peek().cloned() {
                Some(Tok::Str(s)) => Matcher::Contains(s),
                Some(Tok::Regex(r)) => Matcher::Regex(
                    Regex::new(&r)
                        .map_err(|e| Malformed::at(at, format!("bad regular expression: {e}")))?,
                ),
                _ => return Err(self.unexpected("a string or /regular expression/ after 'like'")),
            };
            self.i += 1;
            return Ok(wrap(Expr::Like(Box::new(left), m)));
        }
        if self.eat_keyword("in") {
            self.expect(&Tok::LBracket, "'[' after 'in'")?;
            let mut items = Vec::new();
            if !self.eat(&Tok::RBracket) {
                loop {
                    items.push(self.additive()?);
                    if self.eat(&Tok::RBracket) {
                        break;
                    }
                    self.expect(&Tok::Comma, "',' or ']'")?;
                }
            }
            return Ok(wrap(Expr::In(Box::new(left), items)));
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, Malformed> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => ArithOp::Add,
                Some(Tok::Minus) => ArithOp::Sub,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.multiplicative()?;
            left = Expr::Arith(op, Box::new(left), Box::new(right));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, Malformed> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => ArithOp::Mul,
                Some(Tok::Slash) => ArithOp::Div,
                Some(Tok::Percent) => ArithOp::Rem,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.unary()?;
            left = Expr::Arith(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, Malformed> {
        if self.eat(&Tok::Minus) {
            let e = self.unary()?;
            return Ok(Expr::Arith(
                ArithOp::Sub,
                Box::new(Expr::Int(0)),
                Box::new(e),
            ));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, Malformed> {
        let at = self.offset();
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(Expr::Str(s))
            }
            Some(Tok::Int(n)) => {
                self.i += 1;
                Ok(Expr::Int(n))
            }
            Some(Tok::Float(f)) => {
                self.i += 1;
                Ok(Expr::Float(f))
            }
            Some(Tok::LParen) => {
                self.i += 1;
                let e = self.expr()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Some(Tok::Ident { name, quoted }) => {
                if !quoted && self.toks.get(self.i + 1).map(|s| &s.tok) == Some(&Tok::LParen) {
                    self.i += 2;
                    return match name.to_ascii_lowercase().as_str() {
                        "ispresent" => {
                            let f = self.name()?;
                            self.expect(&Tok::RParen, "')'")?;
                            Ok(Expr::IsPresent(f))
                        }
                        other => Err(Malformed::at(
                            at,
                            format!("{other:?} is not a function this server supports (ispresent)"),
                        )),
                    };
                }
                if !quoted && is_keyword(&name) {
                    return Err(self.unexpected("a value"));
                }
                self.i += 1;
                Ok(Expr::Field(name))
            }
            _ => Err(self.unexpected("a value")),
        }
    }
}
