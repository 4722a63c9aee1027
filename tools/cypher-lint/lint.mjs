#!/usr/bin/env node
// Lints Cypher statements with Neo4j's official language support (@neo4j-cypher/language-support):
// syntax errors and the semantic analysis of Neo4j's own front end (undefined variables, type errors,
// unknown functions, undeclared parameters, ...).
//
// Input (stdin, or the file named as the first argument): a JSON array of
//   {"name": "...", "text": "...", "params": ["rows", ...]}
// optionally wrapped as {"statements": [...], "schema": {"labels": [...], "relationshipTypes": [...],
// "propertyKeys": [...]}}. Each statement's own parameters are declared, so a `$param` it does not list
// is an error. Labels, relationship types and property keys of the schema are declared too: a misspelt
// one is reported as a warning (the linter's own severity for them), printed but not failing the run.
//
// Exit status: 0 when no statement has an error-level diagnostic, 1 when one has, 2 on bad input.
// Options: --cypher-version "CYPHER 5" (default; the language of Neo4j 5), --quiet (errors only).

import { readFileSync } from 'node:fs';
import { lintCypherQuery, testData } from '@neo4j-cypher/language-support';

const ERROR = 1;
const WARNING = 2;

function parseArgs(argv) {
  const args = { file: null, cypherVersion: 'CYPHER 5', quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--cypher-version') args.cypherVersion = argv[++i];
    else if (arg === '--quiet') args.quiet = true;
    else if (arg === '-h' || arg === '--help') {
      console.log('usage: node lint.mjs [STATEMENTS.json] [--cypher-version "CYPHER 5"] [--quiet]');
      process.exit(0);
    } else args.file = arg;
  }
  return args;
}

function readInput(file) {
  const raw = readFileSync(file ?? 0, 'utf8');
  const data = JSON.parse(raw);
  const statements = Array.isArray(data) ? data : data.statements;
  if (!Array.isArray(statements)) throw new Error('expected a JSON array of statements');
  for (const s of statements) {
    if (typeof s?.name !== 'string' || typeof s?.text !== 'string') {
      throw new Error('every statement needs a string "name" and "text"');
    }
  }
  return { statements, schema: Array.isArray(data) ? {} : (data.schema ?? {}) };
}

// Neo4j's built-in functions and procedures: the package ships a snapshot of a Neo4j 5 server's
// signatures (exported as testData.mockSchema). With them the semantic analysis checks function names
// and arities; without them it would accept any function name.
function builtins() {
  const mock = testData?.mockSchema ?? {};
  return { functions: mock.functions, procedures: mock.procedures };
}

function lint(statement, schema, cypherVersion) {
  const params = Object.fromEntries((statement.params ?? []).map((p) => [p, null]));
  const dbSchema = {
    ...builtins(),
    labels: schema.labels,
    relationshipTypes: schema.relationshipTypes,
    propertyKeys: schema.propertyKeys,
    parameters: params,
    defaultLanguage: cypherVersion,
  };
  return lintCypherQuery(statement.text, dbSchema).diagnostics;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  let input;
  try {
    input = readInput(args.file);
  } catch (err) {
    console.error(`cypher-lint: cannot read the statements: ${err.message}`);
    process.exit(2);
  }
  let errors = 0;
  let warnings = 0;
  for (const statement of input.statements) {
    for (const d of lint(statement, input.schema, args.cypherVersion)) {
      const level = d.severity === ERROR ? 'error' : d.severity === WARNING ? 'warning' : 'info';
      if (d.severity === ERROR) errors++;
      else warnings++;
      if (d.severity !== ERROR && args.quiet) continue;
      const { line, character } = d.range.start;
      console.log(`${statement.name}:${line + 1}:${character + 1}: ${level}: ${d.message}`);
    }
  }
  const n = input.statements.length;
  console.log(`cypher-lint: ${n} statements, ${errors} errors, ${warnings} warnings (${args.cypherVersion})`);
  process.exit(errors ? 1 : 0);
}

main();
