//! Generator for the committed data-model files in `datamodel/`.
//!
//! Reads the Broadband Forum "full" data-model XML files (self-contained, no
//! imports to resolve) plus `tr-106-types.xml`, resolves every named data type
//! to its built-in base type and facets, drops all description prose, and
//! renders one compact text file per model in the format documented in
//! [`crate::datamodel`].
//!
//! The output depends only on the input files: objects and parameters keep the
//! order of the XML, facets are written in a fixed order. Regenerating from the
//! same BBF snapshot therefore gives byte-identical files, which a test checks.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{BaseType, FORMAT_VERSION};

/// One generated file and the BBF file it is generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSource {
    /// File name under `datamodel/`.
    pub output: &'static str,
    /// Path of the BBF "full" XML file, relative to the BBF directory.
    pub input: &'static str,
}

/// The models ferroacs ships, in the order they are generated.
pub const MODEL_SOURCES: [ModelSource; 5] = [
    ModelSource {
        output: super::IGD1_FILE,
        input: "tr-098-1-8-0-full.xml",
    },
    ModelSource {
        output: super::DEVICE1_FILE,
        input: "tr-181-1-7-0-full.xml",
    },
    ModelSource {
        output: super::DEVICE2_FILE,
        input: "generated/tr-181-2-19-1-cwmp-full.xml",
    },
    ModelSource {
        output: super::VOICE1_FILE,
        input: "tr-104-1-1-0-full.xml",
    },
    ModelSource {
        output: super::VOICE2_FILE,
        input: "tr-104-2-0-2-cwmp-full.xml",
    },
];

/// Named data types shared by all models (used when a model file does not
/// define a type itself).
pub const TYPES_FILE: &str = "tr-106-types.xml";

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// An input file could not be read.
    #[error(
        "cannot read {path}: {source}; pass the directory that holds the BBF \
         cwmp-data-models files (tr-098-1-8-0-full.xml, tr-106-types.xml, ...)"
    )]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An input file is not well-formed XML.
    #[error("{file}: malformed XML near byte {position}: {source}")]
    Xml {
        /// The file being parsed.
        file: String,
        /// Byte offset where the parser stopped.
        position: u64,
        /// The underlying parser error.
        #[source]
        source: quick_xml::Error,
    },
    /// The XML is well-formed but does not describe a model this generator
    /// understands (unknown data type, missing syntax, ...).
    #[error("{file}: {message}")]
    Model {
        /// The file being converted.
        file: String,
        /// What is wrong, naming the object or parameter.
        message: String,
    },
}

/// Generates every file of [`MODEL_SOURCES`] from the BBF directory.
///
/// Returns `(file name, contents)` pairs; the caller decides where to write
/// them. Reads only the files named in [`MODEL_SOURCES`] and [`TYPES_FILE`].
pub fn generate(bbf_dir: &Path) -> Result<Vec<(String, String)>, GenError> {
    let types_xml = read(bbf_dir, TYPES_FILE)?;
    MODEL_SOURCES
        .iter()
        .map(|source| {
            let xml = read(bbf_dir, source.input)?;
            let text = generate_model(source.input, &xml, &types_xml)?;
            Ok((source.output.to_string(), text))
        })
        .collect()
}

/// Converts one BBF data-model document to the compact format.
///
/// `source_name` is recorded in the header; `types_xml` supplies the named
/// data types that `model_xml` uses without defining.
pub fn generate_model(
    source_name: &str,
    model_xml: &str,
    types_xml: &str,
) -> Result<String, GenError> {
    let doc = parse_xml(source_name, model_xml)?;
    let types_doc = parse_xml(TYPES_FILE, types_xml)?;
    render(&doc, &types_doc, source_name).map_err(|message| GenError::Model {
        file: source_name.to_string(),
        message,
    })
}

fn read(dir: &Path, name: &str) -> Result<String, GenError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|source| GenError::Read { path, source })
}

/// A parsed XML element without text content (descriptions are not kept).
#[derive(Debug)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
}

impl Element {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn is_deleted(&self) -> bool {
        self.attr("status") == Some("deleted")
    }

    fn is_true(&self, key: &str) -> bool {
        self.attr(key) == Some("true")
    }
}

/// Subtrees that carry nothing the generated files need.
const SKIPPED_ELEMENTS: [&str; 6] = [
    "description",
    "bibliography",
    "template",
    "profile",
    "uniqueKey",
    "default",
];

fn parse_xml(file: &str, xml: &str) -> Result<Element, GenError> {
    let mut reader = Reader::from_str(xml);
    let mut stack = vec![Element {
        name: String::new(),
        attrs: Vec::new(),
        children: Vec::new(),
    }];
    let mut skip_depth = 0usize;
    // Internal DTD entities (tr-106-types.xml builds its patterns from them).
    let mut entities: HashMap<String, String> = HashMap::new();
    let xml_error = |reader: &Reader<&[u8]>, source| GenError::Xml {
        file: file.to_string(),
        position: reader.buffer_position(),
        source,
    };
    let structure_error = |message: &str| GenError::Model {
        file: file.to_string(),
        message: message.to_string(),
    };
    loop {
        let event = reader.read_event().map_err(|e| xml_error(&reader, e))?;
        match event {
            Event::Start(start) => {
                if skip_depth > 0 {
                    skip_depth += 1;
                    continue;
                }
                let element = element(&start, &entities).map_err(|e| xml_error(&reader, e))?;
                if SKIPPED_ELEMENTS.contains(&element.name.as_str()) {
                    skip_depth = 1;
                } else {
                    stack.push(element);
                }
            }
            Event::Empty(start) => {
                if skip_depth > 0 {
                    continue;
                }
                let element = element(&start, &entities).map_err(|e| xml_error(&reader, e))?;
                if !SKIPPED_ELEMENTS.contains(&element.name.as_str()) {
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(element);
                    }
                }
            }
            Event::End(_) => {
                if skip_depth > 0 {
                    skip_depth -= 1;
                    continue;
                }
                let done = stack
                    .pop()
                    .ok_or_else(|| structure_error("unbalanced end tag"))?;
                let parent = stack
                    .last_mut()
                    .ok_or_else(|| structure_error("unbalanced end tag"))?;
                parent.children.push(done);
            }
            Event::DocType(text) => {
                entities.extend(entity_declarations(text.as_ref()));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(structure_error("document ends inside an element"));
    }
    // The synthetic node holds the document element.
    stack
        .pop()
        .and_then(|document| document.children.into_iter().next())
        .ok_or_else(|| structure_error("empty document"))
}

/// `<!ENTITY name "value">` declarations of an internal DTD subset.
fn entity_declarations(doctype: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = doctype;
    while let Some(at) = rest.find("<!ENTITY") {
        rest = rest[at + "<!ENTITY".len()..].trim_start();
        let name_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let Some(len) = rest[1..].find(quote) else {
            break;
        };
        found.push((name.to_string(), rest[1..=len].to_string()));
        rest = &rest[len + 2..];
    }
    found
}

fn element(
    start: &BytesStart<'_>,
    entities: &HashMap<String, String>,
) -> Result<Element, quick_xml::Error> {
    let name = start.local_name().as_ref().to_string();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(quick_xml::Error::from)?;
        let key = attr.key.local_name().as_ref().to_string();
        let value = attr
            .normalized_value_with(quick_xml::XmlVersion::Implicit1_0, 16, |name| {
                resolve_predefined_entity(name).or_else(|| entities.get(name).map(String::as_str))
            })?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

/// A parameter's syntax after named types are resolved.
#[derive(Debug, Default, Clone)]
struct Syntax {
    base: Option<BaseType>,
    list: Option<ListFacets>,
    sizes: Vec<(String, String)>,
    ranges: Vec<(String, String, String)>,
    enums: Vec<(String, bool)>,
    patterns: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct ListFacets {
    min_items: String,
    max_items: String,
    sizes: Vec<(String, String)>,
}

/// Named data types visible to one model: its own first, then TR-106's.
struct TypeTable<'a> {
    local: HashMap<&'a str, &'a Element>,
    common: HashMap<&'a str, &'a Element>,
}

impl<'a> TypeTable<'a> {
    fn new(doc: &'a Element, types_doc: &'a Element) -> Self {
        Self {
            local: named_types(doc),
            common: named_types(types_doc),
        }
    }

    fn resolve_named(&self, name: &str, out: &mut Syntax, depth: usize) -> Result<(), String> {
        if depth > 16 {
            return Err(format!("data type {name} is defined in terms of itself"));
        }
        let def = self
            .local
            .get(name)
            .or_else(|| self.common.get(name))
            .ok_or_else(|| format!("unknown data type {name}"))?;
        if let Some(base) = def.attr("base") {
            self.resolve_named(base, out, depth + 1)?;
        }
        self.apply_content(def, out, depth + 1)
    }

    /// Applies the facets and type children of a `syntax` element, a named
    /// `dataType` definition or a `dataType ref=/base=` use.
    fn apply_content(&self, el: &Element, out: &mut Syntax, depth: usize) -> Result<(), String> {
        apply_facets(el, out);
        for child in &el.children {
            match child.name.as_str() {
                "list" => {
                    out.list = Some(ListFacets {
                        min_items: child.attr("minItems").unwrap_or_default().to_string(),
                        max_items: child.attr("maxItems").unwrap_or_default().to_string(),
                        sizes: sizes_of(child),
                    });
                }
                "dataType" => {
                    let name = child
                        .attr("ref")
                        .or_else(|| child.attr("base"))
                        .ok_or("dataType without ref or base")?;
                    self.resolve_named(name, out, depth + 1)?;
                    apply_facets(child, out);
                }
                other => {
                    if let Some(builtin) = BaseType::from_name(other) {
                        out.base = Some(builtin);
                        apply_facets(child, out);
                    }
                }
            }
        }
        Ok(())
    }
}

fn named_types(doc: &Element) -> HashMap<&str, &Element> {
    doc.children_named("dataType")
        .filter_map(|d| d.attr("name").map(|n| (n, d)))
        .collect()
}

fn sizes_of(el: &Element) -> Vec<(String, String)> {
    el.children_named("size")
        .filter(|s| !s.is_deleted())
        .filter(|s| s.attr("minLength").is_some() || s.attr("maxLength").is_some())
        .map(|s| {
            (
                s.attr("minLength").unwrap_or_default().to_string(),
                s.attr("maxLength").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Facets given on a derived type replace the base type's facets of the same
/// kind, except enumerations, which a derived type may extend (TR-106 A.2.5);
/// a value listed again takes the derived definition.
fn apply_facets(el: &Element, out: &mut Syntax) {
    let sizes = sizes_of(el);
    if !sizes.is_empty() {
        out.sizes = sizes;
    }
    let ranges: Vec<_> = el
        .children
        .iter()
        .filter(|c| (c.name == "range" || c.name == "decimalRange") && !c.is_deleted())
        .map(|r| {
            (
                r.attr("minInclusive").unwrap_or_default().to_string(),
                r.attr("maxInclusive").unwrap_or_default().to_string(),
                r.attr("step").unwrap_or_default().to_string(),
            )
        })
        .collect();
    if !ranges.is_empty() {
        out.ranges = ranges;
    }
    let patterns: Vec<_> = el
        .children_named("pattern")
        .filter(|p| !p.is_deleted())
        .filter_map(|p| p.attr("value").map(str::to_string))
        .collect();
    if !patterns.is_empty() {
        out.patterns = patterns;
    }
    // Deleted values stay: devices built to older versions still report them.
    for e in el.children_named("enumeration") {
        let Some(value) = e.attr("value") else {
            continue;
        };
        let read_only = e.attr("access") == Some("readOnly");
        match out.enums.iter_mut().find(|(v, _)| v == value) {
            Some(existing) => existing.1 = read_only,
            None => out.enums.push((value.to_string(), read_only)),
        }
    }
}

fn render(doc: &Element, types_doc: &Element, source_name: &str) -> Result<String, String> {
    let model = doc
        .children_named("model")
        .next()
        .ok_or("no <model> element")?;
    let model_name = model.attr("name").ok_or("<model> without a name")?;
    let kind = if model.is_true("isService") {
        "service"
    } else {
        "root"
    };
    let types = TypeTable::new(doc, types_doc);

    let mut out = String::with_capacity(512 * 1024);
    let _ = writeln!(out, "ferroacs-datamodel\t{FORMAT_VERSION}");
    let _ = writeln!(out, "model\t{model_name}\t{kind}\t{source_name}");
    out.push_str(
        "# Generated from the BBF data-model XML; do not edit. \
         Format: see src/datamodel/mod.rs.\n",
    );

    let mut seen_objects = std::collections::HashSet::new();
    for child in &model.children {
        match child.name.as_str() {
            "parameter" if child.attr("name").is_some() => {
                write_parameter(&mut out, child, &types)?;
            }
            "object" => {
                let Some(path) = child.attr("name") else {
                    continue;
                };
                if !seen_objects.insert(path) {
                    return Err(format!("object {path} is defined twice"));
                }
                write_object(&mut out, child, path)?;
                let mut seen_params = std::collections::HashSet::new();
                for param in child.children_named("parameter") {
                    let Some(name) = param.attr("name") else {
                        continue;
                    };
                    if !seen_params.insert(name) {
                        return Err(format!("parameter {path}{name} is defined twice"));
                    }
                    write_parameter(&mut out, param, &types)
                        .map_err(|e| format!("object {path}: {e}"))?;
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn write_object(out: &mut String, object: &Element, path: &str) -> Result<(), String> {
    check_text(path, "object name")?;
    if !path.ends_with('.') || path.starts_with('.') || path.contains("..") {
        return Err(format!(
            "object name {path:?} is not a dotted path ending in '.'"
        ));
    }
    let access = match object.attr("access") {
        Some("readOnly") | None => 'R',
        Some("readWrite") => 'W',
        Some(other) => return Err(format!("object {path} has unknown access {other:?}")),
    };
    out.push_str(path);
    out.push('\t');
    out.push(access);
    if is_deprecated(object) {
        out.push('D');
    }
    out.push('\n');
    Ok(())
}

/// Deleted items stay in the output (devices built to an older version of
/// the model still use them) and are flagged like deprecated ones.
fn is_deprecated(el: &Element) -> bool {
    matches!(
        el.attr("status"),
        Some("deprecated" | "obsoleted" | "deleted")
    )
}

fn write_parameter(out: &mut String, param: &Element, types: &TypeTable<'_>) -> Result<(), String> {
    let name = param.attr("name").unwrap_or_default();
    check_text(name, "parameter name")?;
    if name.is_empty() || name.contains('.') {
        return Err(format!(
            "parameter name {name:?} is not a single path segment"
        ));
    }
    let fail = |what: String| format!("parameter {name}: {what}");
    let access = match param.attr("access") {
        // A few TR-181 parameters omit the attribute; the DM schema default
        // is read-only.
        Some("readOnly") | None => 'R',
        Some("readWrite") => 'W',
        Some("writeOnceReadOnly") => 'O',
        other => return Err(fail(format!("unknown access {other:?}"))),
    };
    let syntax_el = param
        .children_named("syntax")
        .next()
        .ok_or_else(|| fail("has no <syntax>".into()))?;
    let mut syntax = Syntax::default();
    types
        .apply_content(syntax_el, &mut syntax, 0)
        .map_err(&fail)?;
    let base = syntax
        .base
        .ok_or_else(|| fail("syntax has no built-in base type".into()))?;

    let mut flags = String::new();
    flags.push(access);
    if param.is_true("forcedInform") {
        flags.push('F');
    }
    if syntax_el.is_true("hidden") || syntax_el.is_true("secured") {
        flags.push('H');
    }
    if syntax_el.is_true("command") {
        flags.push('C');
    }
    if syntax.list.is_some() {
        flags.push('L');
    }
    if is_deprecated(param) {
        flags.push('D');
    }
    match param.attr("activeNotify") {
        None | Some("normal") => {}
        Some("canDeny") => flags.push('n'),
        Some("forceEnabled") => flags.push('a'),
        Some("forceDefaultEnabled") => flags.push('A'),
        Some(other) => return Err(fail(format!("unknown activeNotify {other:?}"))),
    }

    out.push_str(name);
    out.push('\t');
    out.push_str(base.code());
    out.push('\t');
    out.push_str(&flags);
    write_facets(out, base, &syntax).map_err(&fail)?;
    out.push('\n');
    Ok(())
}

fn write_facets(out: &mut String, base: BaseType, syntax: &Syntax) -> Result<(), String> {
    if !syntax.sizes.is_empty() {
        out.push_str("\tsize=");
        write_bounds(out, &syntax.sizes, false)?;
    }
    if !syntax.ranges.is_empty() {
        let decimal = base == BaseType::Decimal;
        out.push_str("\trange=");
        for (i, (min, max, step)) in syntax.ranges.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            check_number(min, decimal)?;
            check_number(max, decimal)?;
            out.push_str(min);
            out.push_str("..");
            out.push_str(max);
            if !step.is_empty() {
                check_number(step, false)?;
                out.push('/');
                out.push_str(step);
            }
        }
    }
    if !syntax.enums.is_empty() {
        for (value, _) in &syntax.enums {
            check_text(value, "enumeration value")?;
            if value.contains('|') {
                return Err(format!("enumeration value {value:?} contains '|'"));
            }
        }
        out.push_str("\tenum=");
        join_values(out, syntax.enums.iter().map(|(v, _)| v.as_str()));
        if syntax.enums.iter().any(|(_, ro)| *ro) {
            out.push_str("\tro=");
            join_values(
                out,
                syntax
                    .enums
                    .iter()
                    .filter(|(_, ro)| *ro)
                    .map(|(v, _)| v.as_str()),
            );
        }
    }
    for pattern in &syntax.patterns {
        check_text(pattern, "pattern")?;
        if super::pattern::compile(pattern).is_none() {
            return Err(format!(
                "pattern {pattern:?} uses regular-expression syntax the validator does not support"
            ));
        }
        out.push_str("\tpattern=");
        out.push_str(pattern);
    }
    if let Some(list) = &syntax.list {
        if !list.min_items.is_empty() || !list.max_items.is_empty() {
            out.push_str("\titems=");
            write_bounds(
                out,
                &[(list.min_items.clone(), list.max_items.clone())],
                false,
            )?;
        }
        if !list.sizes.is_empty() {
            out.push_str("\tlistsize=");
            write_bounds(out, &list.sizes, false)?;
        }
    }
    Ok(())
}

fn write_bounds(
    out: &mut String,
    bounds: &[(String, String)],
    decimal: bool,
) -> Result<(), String> {
    for (i, (min, max)) in bounds.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        check_number(min, decimal)?;
        check_number(max, decimal)?;
        out.push_str(min);
        out.push_str("..");
        out.push_str(max);
    }
    Ok(())
}

fn join_values<'a>(out: &mut String, values: impl Iterator<Item = &'a str>) {
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push('|');
        }
        out.push_str(value);
    }
}

/// Accepts an empty bound (unbounded), an integer, or a decimal number.
fn check_number(text: &str, decimal: bool) -> Result<(), String> {
    let ok = text.is_empty()
        || if decimal {
            text.parse::<f64>().is_ok()
        } else {
            text.parse::<i128>().is_ok()
        };
    if ok {
        Ok(())
    } else {
        Err(format!("facet bound {text:?} is not a number"))
    }
}

/// Tabs and line breaks would break the line-oriented output format.
fn check_text(text: &str, what: &str) -> Result<(), String> {
    if text.contains(['\t', '\n', '\r']) {
        Err(format!("{what} {text:?} contains a tab or line break"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TYPES: &str = r#"<dm:document xmlns:dm="urn:x">
      <dataType name="_AliasCommon"><string><size maxLength="64"/></string></dataType>
      <dataType name="Alias" base="_AliasCommon"/>
      <dataType name="IPAddress"><string><size maxLength="45"/></string></dataType>
      <dataType name="IPv4Address" base="IPAddress">
        <size maxLength="15"/>
        <pattern value=""/>
        <pattern value="((25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"/>
      </dataType>
      <dataType name="DiagnosticsState"><string>
        <enumeration value="None" access="readOnly"/>
        <enumeration value="Requested"/>
        <enumeration value="Complete" access="readOnly"/>
      </string></dataType>
    </dm:document>"#;

    fn model(body: &str) -> String {
        format!(
            r#"<?xml version="1.0"?>
<dm:document xmlns:dm="urn:x" xmlns:dmr="urn:y">
  <description>Prose &amp; more prose</description>
  <model name="Test:1.0">
    {body}
  </model>
</dm:document>"#
        )
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .skip(2)
            .collect()
    }

    #[test]
    fn header_names_model_and_source() {
        let xml =
            model(r#"<object name="Test." access="readOnly" minEntries="1" maxEntries="1"/>"#);
        let text = generate_model("t.xml", &xml, TYPES).unwrap();
        let mut it = text.lines();
        assert_eq!(it.next(), Some("ferroacs-datamodel\t1"));
        assert_eq!(it.next(), Some("model\tTest:1.0\troot\tt.xml"));
        assert_eq!(lines(&text), vec!["Test.\tR"]);
    }

    #[test]
    fn resolves_named_types_and_extends_enumerations() {
        let xml = model(
            r#"<object name="Test.Table.{i}." access="readWrite" minEntries="0" maxEntries="unbounded">
      <description>x</description>
      <uniqueKey><parameter ref="Alias"/></uniqueKey>
      <parameter name="Alias" access="readWrite" activeNotify="canDeny">
        <description>y</description>
        <syntax><dataType ref="Alias"/></syntax>
      </parameter>
      <parameter name="Addr" access="readWrite">
        <syntax><list maxItems="4"><size maxLength="256"/></list><dataType ref="IPv4Address"/></syntax>
      </parameter>
      <parameter name="State" access="readWrite">
        <syntax><dataType ref="DiagnosticsState">
          <enumeration value="None"/>
          <enumeration value="Error_Internal" access="readOnly"/>
        </dataType><default type="object" value="None"/></syntax>
      </parameter>
      <parameter name="Secret" access="readWrite" forcedInform="true">
        <syntax secured="true"><string><size maxLength="128"/></string></syntax>
      </parameter>
      <parameter name="Gone" access="readOnly" status="deleted">
        <syntax><string><size maxLength="8" status="deleted"/><enumeration value="Old" status="deleted"/><enumeration value="New"/></string></syntax>
      </parameter>
      <parameter name="Port" access="readWrite" status="deprecated">
        <syntax><unsignedInt><range minInclusive="0" maxInclusive="0"/><range minInclusive="1024" maxInclusive="65535" step="2"/></unsignedInt></syntax>
      </parameter>
    </object>"#,
        );
        let text = generate_model("t.xml", &xml, TYPES).unwrap();
        assert_eq!(
            lines(&text),
            vec![
                "Test.Table.{i}.\tW",
                "Alias\tstr\tWn\tsize=..64",
                "Addr\tstr\tWL\tsize=..15\tpattern=\tpattern=((25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])\titems=..4\tlistsize=..256",
                "State\tstr\tW\tenum=None|Requested|Complete|Error_Internal\tro=Complete|Error_Internal",
                "Secret\tstr\tWFH\tsize=..128",
                "Gone\tstr\tRD\tenum=Old|New",
                "Port\tuint\tWD\trange=0..0,1024..65535/2",
            ]
        );
    }

    #[test]
    fn service_models_keep_relative_paths() {
        let xml = r#"<dm:document xmlns:dm="urn:x"><model name="VoiceService:1.1" isService="true">
          <parameter name="VoiceServiceNumberOfEntries" access="readOnly"><syntax><unsignedInt/></syntax></parameter>
          <object name="VoiceService.{i}." access="readOnly" minEntries="0" maxEntries="unbounded"/>
        </model></dm:document>"#;
        let text = generate_model("v.xml", xml, TYPES).unwrap();
        assert!(text.contains("model\tVoiceService:1.1\tservice\tv.xml\n"));
        assert_eq!(
            lines(&text),
            vec![
                "VoiceServiceNumberOfEntries\tuint\tR",
                "VoiceService.{i}.\tR"
            ]
        );
    }

    #[test]
    fn unknown_data_type_names_the_parameter() {
        let xml = model(
            r#"<object name="Test." access="readOnly" minEntries="1" maxEntries="1">
              <parameter name="X" access="readOnly"><syntax><dataType ref="Nope"/></syntax></parameter>
            </object>"#,
        );
        let err = generate_model("t.xml", &xml, TYPES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Test."), "{err}");
        assert!(err.contains("parameter X"), "{err}");
        assert!(err.contains("unknown data type Nope"), "{err}");
    }

    #[test]
    fn duplicate_objects_are_rejected() {
        let xml = model(
            r#"<object name="Test." access="readOnly"/><object name="Test." access="readOnly"/>"#,
        );
        let err = generate_model("t.xml", &xml, TYPES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("defined twice"), "{err}");
    }

    #[test]
    fn malformed_xml_is_reported_with_file_name() {
        let err = generate_model("broken.xml", "<a><b></a>", TYPES)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("broken.xml: malformed XML"), "{err}");
    }

    #[test]
    fn missing_directory_says_what_to_pass() {
        let err = generate(Path::new("/nonexistent/bbf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tr-106-types.xml"), "{err}");
        assert!(err.contains("cwmp-data-models"), "{err}");
    }
}
