// Runs Python snippets under the real MicroPython interpreter (the WebAssembly
// port from npm) and reports their output. Driven by tests/harness/micropython.py.
//
// Input on stdin, one JSON object:
//   { "root": "/abs/project", "packages": ["protocols", ...],
//     "runs": [ { "code": "...", "files": [ {"path": "a/b.txt", "b64": "..."} ] } ] }
// Every run gets a fresh interpreter: the project's packages copied to /lib,
// its files written under /work (relative paths) or at their absolute path,
// cwd /work, then the code executed as __main__. "code" may be a list of
// parts, run one after another in the same interpreter (shared globals):
// gc.collect() reclaims memory only between parts, not inside one.
//
// Output on stdout, one JSON object per line, written synchronously so that
// output printed before a hang survives when the parent kills the process:
//   {"run": i, "fd": 1 | 2, "text": "..."}   interpreter output
//   {"run": i, "returncode": n}              the run finished
// returncode: 0 ok, 1 uncaught exception (traceback on fd 2), n for SystemExit(n).

import { readFileSync, readdirSync, statSync, writeSync } from "node:fs";
import { join, posix } from "node:path";
import { pathToFileURL } from "node:url";

const PACKAGE = "@micropython/micropython-webassembly-pyscript";

function emit(event) {
  const line = Buffer.from(JSON.stringify(event) + "\n", "utf8");
  let done = 0;
  while (done < line.length) {
    try {
      done += writeSync(1, line, done);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
    }
  }
}

// Collect the .py files of a folder, recursively, as [relative posix path, bytes].
function collectPy(root, folder) {
  const found = [];
  const walk = (rel) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      if (name === "__pycache__" || name.startsWith(".")) continue;
      const relPath = posix.join(rel, name);
      const stat = statSync(join(root, relPath));
      if (stat.isDirectory()) walk(relPath);
      else if (name.endsWith(".py")) found.push([relPath, readFileSync(join(root, relPath))]);
    }
  };
  walk(folder);
  return found;
}

function makeDirs(FS, path) {
  let current = "";
  for (const part of path.split("/").filter(Boolean)) {
    current += "/" + part;
    try {
      FS.mkdir(current);
    } catch {
      // already there
    }
  }
}

function writeFile(FS, path, data) {
  makeDirs(FS, posix.dirname(path));
  FS.writeFile(path, data);
}

// Output sink: bytes are buffered and flushed as text at each newline.
function sink(run, fd) {
  let pending = [];
  const flush = () => {
    if (pending.length) {
      emit({ run, fd, text: Buffer.from(pending).toString("utf8") });
      pending = [];
    }
  };
  const write = (bytes) => {
    for (const b of bytes) {
      pending.push(b);
      if (b === 10) flush();
    }
  };
  return { write, flush };
}

function exitCode(err) {
  // SystemExit: the last traceback line is "SystemExit" or "SystemExit: <arg>".
  const lines = String(err.message || "").trimEnd().split("\n");
  const last = lines[lines.length - 1] || "";
  if (/^SystemExit(: ?(None)?)?$/.test(last)) return { code: 0, quiet: true };
  const m = /^SystemExit: (-?\d+)$/.exec(last);
  if (m) return { code: Number(m[1]), quiet: true };
  return { code: 1, quiet: false };
}

async function main() {
  const job = JSON.parse(readFileSync(0, "utf8"));
  let loadMicroPython;
  try {
    ({ loadMicroPython } = await import(pathToFileURL(join(job.package_dir, "micropython.mjs")).href));
  } catch (err) {
    process.stderr.write(`cannot load ${PACKAGE}: ${err.message}\n`);
    process.exit(3);
  }
  const project = [];
  for (const pkg of job.packages) project.push(...collectPy(job.root, pkg));

  for (let run = 0; run < job.runs.length; run++) {
    const { code, files } = job.runs[run];
    const out = sink(run, 1);
    const err = sink(run, 2);
    const mp = await loadMicroPython({ linebuffer: false, stdout: out.write, stderr: err.write });
    for (const [rel, data] of project) writeFile(mp.FS, "/lib/" + rel, data);
    makeDirs(mp.FS, "/work");
    for (const file of files) {
      const path = file.path.startsWith("/") ? file.path : "/work/" + file.path;
      writeFile(mp.FS, posix.normalize(path), Buffer.from(file.b64, "base64"));
    }
    let returncode = 0;
    try {
      mp.runPython("import os, sys\nif '/lib' not in sys.path: sys.path.append('/lib')\nos.chdir('/work')\ndel os, sys\n");
      for (const part of Array.isArray(code) ? code : [code]) mp.runPython(part);
    } catch (e) {
      const { code: rc, quiet } = exitCode(e);
      returncode = rc;
      if (!quiet) err.write(Buffer.from(String(e.message || e), "utf8"));
    }
    out.flush();
    err.flush();
    emit({ run, returncode });
  }
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + "\n");
  process.exit(2);
});
