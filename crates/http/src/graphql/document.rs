//! Measures a parsed GraphQL document the way async-graphql's validation will walk it: with
//! every fragment spread replaced by its fragment. The walk itself visits each fragment once
//! (its size and depth are remembered), so a document whose fragments spread each other
//! several times is measured in linear time and refused before validation would take
//! exponential time. The same walk finds string arguments holding NUL characters and lists the
//! root mutation fields of the operation to run.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
    Selection, SelectionSet,
};
use async_graphql::{Name, Pos, Positioned};
use async_graphql_value::{ConstValue, Value};

use super::guard::Limits;

/// The bounds of the expanded document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Deepest nesting of selection sets, fragment spreads counting as a level.
    pub max_depth: usize,
    /// Most nodes: fields, fragment spreads, inline fragments, directives, arguments, values
    /// and variable definitions, counted with every fragment expanded where it is spread.
    pub max_nodes: usize,
}

/// Why a document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    TooDeep,
    TooLarge,
    /// A fragment that spreads itself, directly or not.
    Cycle(String),
}

impl Problem {
    pub(crate) fn message(&self, limits: &Limits) -> String {
        match self {
            Self::TooDeep => format!(
                "The document nests more than {} levels deep once its fragments are expanded",
                limits.max_nesting
            ),
            Self::TooLarge => format!(
                "The document has more than {} nodes once its fragments are expanded",
                limits.max_nodes
            ),
            Self::Cycle(name) => format!("Fragment \"{name}\" spreads itself"),
        }
    }
}

/// What [`analyze`] found in an acceptable document.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    /// String arguments (and variables' default values) holding a NUL character: the
    /// argument's name (with its place inside a list or input object) and position.
    pub nul_arguments: Vec<(String, Pos)>,
    /// The root mutation fields the operation to run executes (see
    /// [`super::guard::CheckedRequest::mutation_fields`]).
    pub mutation_fields: Vec<String>,
}

/// Measures `document` against `budget`, then lists its NUL arguments and the root mutation
/// fields of the operation `operation_name` picks (as async-graphql picks it).
pub(crate) fn analyze(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &serde_json::Map<String, serde_json::Value>,
    budget: Budget,
) -> Result<Analysis, Problem> {
    let mut walk = Walk {
        document,
        budget,
        max_nodes: u64::try_from(budget.max_nodes).unwrap_or(u64::MAX),
        fragments: HashMap::new(),
        visiting: HashSet::new(),
        nul: Vec::new(),
        path: String::new(),
    };
    let mut total = 0u64;
    // Validation visits every operation, and every fragment definition on its own as well as
    // where it is spread.
    for (_, operation) in document.operations.iter() {
        let nodes = walk.operation(&operation.node)?;
        total = walk.add(total, nodes)?;
    }
    for name in document.fragments.keys() {
        if let Some(fragment) = walk.fragment(name, budget.max_depth)? {
            total = walk.add(total, fragment.nodes)?;
        }
    }
    let mutation_fields = match selected(&document.operations, operation_name) {
        Some(operation) if operation.ty == OperationType::Mutation => {
            let mut fields = Vec::new();
            let skip = Skip {
                variables,
                operation,
            };
            root_fields(document, &skip, &operation.selection_set.node, &mut fields);
            fields
        }
        _ => Vec::new(),
    };
    Ok(Analysis {
        nul_arguments: walk.nul,
        mutation_fields,
    })
}

/// A fragment's expanded size and the levels it takes.
#[derive(Debug, Clone, Copy)]
struct Measure {
    nodes: u64,
    height: usize,
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    budget: Budget,
    max_nodes: u64,
    /// Fragments already measured.
    fragments: HashMap<&'a str, Measure>,
    /// Fragments being measured (to find cycles).
    visiting: HashSet<&'a str>,
    nul: Vec<(String, Pos)>,
    /// The argument being walked, for naming a NUL inside it.
    path: String,
}

impl<'a> Walk<'a> {
    fn add(&self, total: u64, nodes: u64) -> Result<u64, Problem> {
        let total = total.saturating_add(nodes);
        if total > self.max_nodes {
            Err(Problem::TooLarge)
        } else {
            Ok(total)
        }
    }

    fn operation(&mut self, operation: &'a OperationDefinition) -> Result<u64, Problem> {
        let mut nodes = 1 + self.directives(&operation.directives);
        for definition in &operation.variable_definitions {
            let definition = &definition.node;
            nodes += 1 + self.directives(&definition.directives);
            if let Some(default) = &definition.default_value {
                self.path.clear();
                self.path.push('$');
                self.path.push_str(&definition.name.node);
                nodes += self.const_value(&default.node, default.pos);
            }
        }
        let nodes = self.add(nodes, 0)?;
        let set = self.selection_set(&operation.selection_set.node, self.budget.max_depth)?;
        self.add(nodes, set.nodes)
    }

    /// Measures a selection set that may take `room` levels.
    fn selection_set(&mut self, set: &'a SelectionSet, room: usize) -> Result<Measure, Problem> {
        if room == 0 {
            return Err(Problem::TooDeep);
        }
        let mut nodes = 0u64;
        let mut below = 0usize;
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let own = 1 + self.directives(&field.directives);
                    nodes = self.add(nodes, own)?;
                    for (name, value) in &field.arguments {
                        self.path.clear();
                        self.path.push_str(&name.node);
                        nodes += 1 + self.value(&value.node, name.pos);
                    }
                    if !field.selection_set.node.items.is_empty() {
                        let inner = self.selection_set(&field.selection_set.node, room - 1)?;
                        nodes = self.add(nodes, inner.nodes)?;
                        below = below.max(inner.height);
                    }
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    let own = 1 + self.directives(&inline.directives);
                    nodes = self.add(nodes, own)?;
                    let inner = self.selection_set(&inline.selection_set.node, room - 1)?;
                    nodes = self.add(nodes, inner.nodes)?;
                    below = below.max(inner.height);
                }
                Selection::FragmentSpread(spread) => {
                    let spread = &spread.node;
                    let own = 1 + self.directives(&spread.directives);
                    nodes = self.add(nodes, own)?;
                    // Unknown fragments are left to validation, which names them.
                    if let Some(inner) = self.fragment(&spread.fragment_name.node, room - 1)? {
                        nodes = self.add(nodes, inner.nodes)?;
                        below = below.max(inner.height);
                    }
                }
            }
        }
        Ok(Measure {
            nodes,
            height: below + 1,
        })
    }

    /// Measures the fragment `name`, which may take `room` levels, once.
    fn fragment(&mut self, name: &'a str, room: usize) -> Result<Option<Measure>, Problem> {
        if let Some(known) = self.fragments.get(name) {
            return if known.height > room {
                Err(Problem::TooDeep)
            } else {
                Ok(Some(*known))
            };
        }
        let Some(definition) = self.document.fragments.get(name) else {
            return Ok(None);
        };
        if !self.visiting.insert(name) {
            return Err(Problem::Cycle(name.to_owned()));
        }
        let own = 1 + self.directives(&definition.node.directives);
        let inner = self.selection_set(&definition.node.selection_set.node, room)?;
        self.visiting.remove(name);
        let measure = Measure {
            nodes: self.add(own, inner.nodes)?,
            height: inner.height,
        };
        self.fragments.insert(name, measure);
        Ok(Some(measure))
    }

    fn directives(&mut self, directives: &[Positioned<Directive>]) -> u64 {
        let mut nodes = 0;
        for directive in directives {
            nodes += 1;
            for (name, value) in &directive.node.arguments {
                self.path.clear();
                self.path.push_str(&name.node);
                nodes += 1 + self.value(&value.node, name.pos);
            }
        }
        nodes
    }

    /// Counts a value's nodes and notes NUL characters in its strings. The recursion is bounded
    /// by the nesting of the document's text, checked before parsing.
    fn value(&mut self, value: &Value, pos: Pos) -> u64 {
        let here = self.path.len();
        match value {
            Value::String(s) => {
                self.note_nul(s, pos);
                1
            }
            Value::List(items) => {
                let mut nodes = 1;
                for (i, item) in items.iter().enumerate() {
                    use std::fmt::Write as _;
                    let _ = write!(self.path, "[{i}]");
                    nodes += self.value(item, pos);
                    self.path.truncate(here);
                }
                nodes
            }
            Value::Object(fields) => {
                let mut nodes = 1;
                for (name, item) in fields {
                    self.path.push('.');
                    self.path.push_str(name);
                    nodes += self.value(item, pos);
                    self.path.truncate(here);
                }
                nodes
            }
            _ => 1,
        }
    }

    /// [`Walk::value`] for a variable's default value.
    fn const_value(&mut self, value: &ConstValue, pos: Pos) -> u64 {
        let here = self.path.len();
        match value {
            ConstValue::String(s) => {
                self.note_nul(s, pos);
                1
            }
            ConstValue::List(items) => {
                let mut nodes = 1;
                for (i, item) in items.iter().enumerate() {
                    use std::fmt::Write as _;
                    let _ = write!(self.path, "[{i}]");
                    nodes += self.const_value(item, pos);
                    self.path.truncate(here);
                }
                nodes
            }
            ConstValue::Object(fields) => {
                let mut nodes = 1;
                for (name, item) in fields {
                    self.path.push('.');
                    self.path.push_str(name);
                    nodes += self.const_value(item, pos);
                    self.path.truncate(here);
                }
                nodes
            }
            _ => 1,
        }
    }

    fn note_nul(&mut self, s: &str, pos: Pos) {
        if s.contains('\0') {
            self.nul.push((self.path.clone(), pos));
        }
    }
}

/// The operation async-graphql runs for `name`: the named one, or the only one.
fn selected<'a>(
    operations: &'a DocumentOperations,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (operations, name) {
        (DocumentOperations::Single(operation), None) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|o| &o.node)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next().map(|o| &o.node)
        }
        _ => None,
    }
}

/// Evaluates `@skip(if:)` and `@include(if:)` as the executor does; a condition that cannot
/// be read counts the selection in.
struct Skip<'a> {
    variables: &'a serde_json::Map<String, serde_json::Value>,
    operation: &'a OperationDefinition,
}

impl Skip<'_> {
    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|directive| {
            let include = match directive.node.name.node.as_str() {
                "skip" => false,
                "include" => true,
                _ => return false,
            };
            directive
                .node
                .get_argument("if")
                .and_then(|value| self.boolean(&value.node))
                .is_some_and(|condition| condition != include)
        })
    }

    fn boolean(&self, value: &Value) -> Option<bool> {
        match value {
            Value::Boolean(b) => Some(*b),
            Value::Variable(name) => match self.variables.get(name.as_str()) {
                Some(value) => value.as_bool(),
                None => self
                    .operation
                    .variable_definitions
                    .iter()
                    .find(|d| d.node.name.node == *name)
                    .and_then(|d| d.node.default_value.as_ref())
                    .and_then(|v| match &v.node {
                        ConstValue::Boolean(b) => Some(*b),
                        _ => None,
                    }),
            },
            _ => None,
        }
    }
}

/// The root fields of a mutation's selection set, fragments expanded. Bounded: the document
/// passed [`analyze`]'s budget, so its expansion is small and free of cycles.
fn root_fields(
    document: &ExecutableDocument,
    skip: &Skip<'_>,
    set: &SelectionSet,
    fields: &mut Vec<String>,
) {
    for item in &set.items {
        if skip.skipped(item.node.directives()) {
            continue;
        }
        match &item.node {
            Selection::Field(field) => {
                let name: &Name = &field.node.name.node;
                if !name.starts_with("__") {
                    fields.push(name.to_string());
                }
            }
            Selection::InlineFragment(inline) => {
                root_fields(document, skip, &inline.node.selection_set.node, fields);
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    root_fields(document, skip, &fragment.node.selection_set.node, fields);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget {
        max_depth: 8,
        max_nodes: 1_000,
    };

    fn analyze_text(source: &str, variables: serde_json::Value) -> Result<Analysis, Problem> {
        analyze_within(source, variables, BUDGET)
    }

    fn analyze_within(
        source: &str,
        variables: serde_json::Value,
        budget: Budget,
    ) -> Result<Analysis, Problem> {
        let document = async_graphql::parser::parse_query(source).unwrap();
        let serde_json::Value::Object(variables) = variables else {
            unreachable!()
        };
        analyze(&document, None, &variables, budget)
    }

    #[test]
    fn fragments_spreading_each_other_are_measured_expanded_in_linear_time() {
        // F40 expands to 4^40 fields; measuring it visits each fragment once.
        let mut source = String::from("query { posts { ...F40 } }\nfragment F0 on Post { id }\n");
        for i in 1..=40 {
            let p = i - 1;
            source.push_str(&format!(
                "fragment F{i} on Post {{ ...F{p} ...F{p} ...F{p} ...F{p} }}\n"
            ));
        }
        let deep = Budget {
            max_depth: 64,
            ..BUDGET
        };
        assert_eq!(
            analyze_within(&source, serde_json::json!({}), deep).unwrap_err(),
            Problem::TooLarge
        );
        // Three levels expand to 4^3 = 64 fields and fit.
        let small = "query { posts { ...F3 } } fragment F0 on Post { id } \
                     fragment F1 on Post { ...F0 ...F0 ...F0 ...F0 } \
                     fragment F2 on Post { ...F1 ...F1 ...F1 ...F1 } \
                     fragment F3 on Post { ...F2 ...F2 ...F2 ...F2 }";
        assert!(analyze_text(small, serde_json::json!({})).is_ok());
    }

    #[test]
    fn depth_is_counted_through_fragment_spreads() {
        let mut source = String::from("{ posts { ...F0 } }\n");
        for i in 0..10 {
            source.push_str(&format!(
                "fragment F{i} on Post {{ author {{ ...F{} }} }}\n",
                i + 1
            ));
        }
        source.push_str("fragment F10 on User { id }\n");
        assert_eq!(
            analyze_text(&source, serde_json::json!({})).unwrap_err(),
            Problem::TooDeep
        );
    }

    #[test]
    fn a_fragment_spreading_itself_is_named() {
        let source = "{ posts { ...A } } fragment A on Post { ...B } fragment B on Post { ...A }";
        assert!(matches!(
            analyze_text(source, serde_json::json!({})).unwrap_err(),
            Problem::Cycle(_)
        ));
    }

    #[test]
    fn nul_in_string_arguments_and_default_values_is_found_with_its_place() {
        let source = r#"query($t: String = "a\u0000") { posts(tag: "\u0000") { id } createOrder(items: [{productId: "x\u0000", quantity: 1}]) { id } }"#;
        let found: Vec<String> = analyze_text(source, serde_json::json!({}))
            .unwrap()
            .nul_arguments
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(found, ["$t", "tag", "items[0].productId"]);
    }

    #[test]
    fn root_mutation_fields_count_aliases_fragments_and_skip_what_is_skipped() {
        let source = "mutation($no: Boolean!) { a: createUser { id } b: createUser { id } \
                      ...M ... on MutationRoot { deleteUser } c: createUser @skip(if: true) { id } \
                      d: createUser @include(if: $no) { id } __typename } \
                      fragment M on MutationRoot { createPost { id } }";
        let fields = analyze_text(source, serde_json::json!({"no": false}))
            .unwrap()
            .mutation_fields;
        assert_eq!(
            fields,
            ["createUser", "createUser", "createPost", "deleteUser"]
        );
        assert!(
            analyze_text("{ posts { id } }", serde_json::json!({}))
                .unwrap()
                .mutation_fields
                .is_empty()
        );
    }
}
