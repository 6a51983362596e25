// validate-openapi.mjs — validates an OpenAPI document (JSON file named on the command
// line) with @seriousme/openapi-schema-validator, i.e. against the official OpenAPI JSON
// schema of its version (3.1: https://spec.openapis.org/oas/3.1/schema), then checks what
// that schema cannot express: every Schema Object against the JSON Schema 2020-12
// meta-schema, path templates against their path parameters, unique operationIds.
//
//   node tests/lib/validate-openapi.mjs FILE.json
//
// Exit status: 0 valid, 1 invalid (errors on stderr), 2 usage or setup error (the
// validator is not installed: run contrib/install-deps). The modules are looked up in
// $SP_NODE_MODULES, else <srcdir>/_build/node/node_modules (srcdir: $SP_SRCDIR, else two
// levels above this file).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const PKG = '@seriousme/openapi-schema-validator';

function fail(status, msg) {
	process.stderr.write(`validate-openapi: ${msg}\n`);
	process.exit(status);
}

const file = process.argv[2];
if (!file || process.argv.length > 3)
	fail(2, 'usage: validate-openapi.mjs FILE.json');

const here = path.dirname(fileURLToPath(import.meta.url));
const srcdir = process.env.SP_SRCDIR || path.resolve(here, '..', '..');
const nodeModules = process.env.SP_NODE_MODULES || path.join(srcdir, '_build', 'node', 'node_modules');
const pkgDir = path.join(nodeModules, ...PKG.split('/'));
if (!existsSync(path.join(pkgDir, 'index.js')))
	fail(2, `${PKG} not found in ${nodeModules}: run contrib/install-deps (or set SP_NODE_MODULES)`);

const load = async (p) => import(pathToFileURL(p).href);
const { Validator } = await load(path.join(pkgDir, 'index.js'));
const ajvMod = await load(path.join(nodeModules, 'ajv', 'dist', '2020.js'));
const Ajv2020 = ajvMod.default?.default ?? ajvMod.default;

let doc;
try {
	doc = JSON.parse(readFileSync(file, 'utf8'));
} catch (e) {
	fail(1, `${file}: not readable JSON: ${e.message}`);
}

const errors = [];

// 1. The official schema of the document's OpenAPI version (and its internal $refs).
const validator = new Validator({ allErrors: true });
const res = await validator.validate(structuredClone(doc));
if (!res.valid) {
	const list = Array.isArray(res.errors) ? res.errors : [res.errors];
	for (const e of list)
		errors.push(typeof e === 'string' ? e : `schema: ${e.instancePath || '/'} ${e.message}` +
			(e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ''));
}

// The checks below assume a structurally valid OpenAPI 3.1 document.
if (errors.length === 0 && String(doc.openapi).startsWith('3.1')) {
	const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
	const ptr = (parts) => '/' + parts.map((p) => String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
	const checkSchema = (schema, where) => {
		if (schema === undefined)
			return;
		if (!ajv.validateSchema(schema))
			for (const e of ajv.errors)
				errors.push(`${ptr(where)}: not a JSON Schema 2020-12: ${e.instancePath || '/'} ${e.message}`);
	};
	const checkContent = (content, where) => {
		for (const [type, media] of Object.entries(content || {}))
			checkSchema(media.schema, [...where, 'content', type, 'schema']);
	};
	const checkParams = (params, where) => {
		(params || []).forEach((p, i) => checkSchema(p.schema, [...where, 'parameters', i, 'schema']));
	};

	for (const [name, schema] of Object.entries(doc.components?.schemas || {}))
		checkSchema(schema, ['components', 'schemas', name]);

	const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
	const opIds = new Map();
	for (const [p, item] of Object.entries(doc.paths || {})) {
		checkParams(item.parameters, ['paths', p]);
		const templ = [...p.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]);
		for (const method of METHODS) {
			const op = item[method];
			if (!op)
				continue;
			const where = ['paths', p, method];
			checkParams(op.parameters, where);
			checkContent(op.requestBody?.content, [...where, 'requestBody']);
			for (const [code, r] of Object.entries(op.responses || {}))
				checkContent(r.content, [...where, 'responses', code]);
			// Each template expression must correspond to a path parameter, and each path
			// parameter to a template expression (OpenAPI 3.1, Path Templating).
			const declared = new Set();
			for (const prm of [...(item.parameters || []), ...(op.parameters || [])])
				if (prm.in === 'path')
					declared.add(prm.name);
			for (const t of templ)
				if (!declared.has(t))
					errors.push(`${ptr(where)}: path parameter {${t}} is not declared`);
			for (const d of declared)
				if (!templ.includes(d))
					errors.push(`${ptr(where)}: path parameter "${d}" is not in the path`);
			if (op.operationId !== undefined) {
				if (opIds.has(op.operationId))
					errors.push(`${ptr(where)}: operationId "${op.operationId}" also used by ${opIds.get(op.operationId)}`);
				else
					opIds.set(op.operationId, ptr(where));
			}
		}
	}
}

if (errors.length) {
	for (const e of errors)
		process.stderr.write(`${file}: ${e}\n`);
	process.stderr.write(`validate-openapi: ${file} is NOT a valid OpenAPI document (${errors.length} error(s))\n`);
	process.exit(1);
}
process.stdout.write(`validate-openapi: ${file} is a valid OpenAPI ${validator.version} document\n`);
