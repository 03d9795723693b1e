/**
 * Datasets on disk: image folders (torchvision ImageFolder layout), flat folders labelled by
 * a CSV, IDX files, and `openDataset`, which turns a CLI spec into one of them or into an
 * embedded package dataset (embedded.ts).
 *
 * ImageFolder convention: `dir/<class>/…/<image>`; class index = position of the class
 * folder's name in sorted order (code-unit order, as Python's `sorted`); images are found
 * recursively, extensions .jpg/.jpeg/.png in any case, ordered by (folder path, file name)
 * like torchvision's `sorted(os.walk(…))`. A class folder without images is an error, as
 * in torchvision. Hidden entries (leading '.') are ignored.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RegroupError } from '../../compiler/errors.js';
import { decodeImageFile } from './decode.js';
import { fashionMnist, mnist, type EmbeddedSplit } from './embedded.js';
import { idxFilesIn, labelsBeside, readIdx } from './idx.js';
import { checkIndex, memoryDataset } from './memory.js';
import type { Dataset, LabeledImage } from './types.js';

export interface DatasetOptions {
  /** Throw on the first unreadable image instead of skipping it (loaders' default; see Dataset.strict). */
  strict?: boolean;
}

/** One image file and its class index. */
export interface FileSample {
  readonly path: string;
  readonly label: number;
}

/** A dataset whose samples are image files: loaders may decode these in worker threads. */
export interface FileDataset extends Dataset {
  readonly files: readonly FileSample[];
}

export function isFileDataset(dataset: Dataset): dataset is FileDataset {
  return Array.isArray((dataset as Partial<FileDataset>).files);
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png']);

function fileDataset(
  name: string,
  files: FileSample[],
  classes: readonly string[] | undefined,
  options: DatasetOptions,
): FileDataset {
  return {
    name,
    size: files.length,
    classes,
    files,
    strict: options.strict ?? false,
    async get(index: number): Promise<LabeledImage> {
      const sample = files[checkIndex(index, files.length, name)]!;
      return { image: await decodeImageFile(sample.path), label: sample.label, source: sample.path };
    },
  };
}

function requireDirectory(dir: string, what: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new RegroupError('io', `${what} '${dir}' does not exist; check the path`);
  }
  if (!stat.isDirectory()) throw new RegroupError('usage', `${what} '${dir}' is not a folder`);
}

interface Entry {
  name: string;
  isDirectory: boolean;
}

/** Entries not starting with '.', symbolic links followed (as torchvision's os.walk(followlinks=True)). */
function visibleEntries(dir: string): Entry[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => !e.name.startsWith('.'))
    .map((e) => ({
      name: e.name,
      isDirectory: e.isDirectory() || (e.isSymbolicLink() && isDirectoryPath(path.join(dir, e.name))),
    }));
}

function isDirectoryPath(file: string): boolean {
  try {
    return fs.statSync(file).isDirectory();
  } catch {
    return false;
  }
}

function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase());
}

/** Image files under `dir`, recursively, ordered by (folder, file name). */
function imagesUnder(dir: string): string[] {
  const found: string[] = [];
  const walk = (folder: string): void => {
    const entries = visibleEntries(folder).sort((a, b) => compareNames(a.name, b.name));
    for (const e of entries) if (!e.isDirectory && isImageName(e.name)) found.push(path.join(folder, e.name));
    for (const e of entries) if (e.isDirectory) walk(path.join(folder, e.name));
  };
  walk(dir);
  return found;
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A folder with one sub-folder per class (torchvision ImageFolder). */
export async function imageFolder(dir: string, options: DatasetOptions = {}): Promise<FileDataset> {
  requireDirectory(dir, 'image folder');
  const entries = visibleEntries(dir);
  if (entries.length === 0)
    throw new RegroupError(
      'bad-data',
      `image folder '${dir}' is empty; it needs one sub-folder per class holding .jpg/.jpeg/.png images`,
    );
  const classes = entries
    .filter((e) => e.isDirectory)
    .map((e) => e.name)
    .sort(compareNames);
  if (classes.length === 0) {
    const loose = entries.filter((e) => isImageName(e.name)).length;
    const hint =
      loose > 0 ? `; it holds ${loose} loose images: label them with a CSV and pass '${dir},labels.csv'` : '';
    throw new RegroupError(
      'bad-data',
      `image folder '${dir}' has no class folders (expected ${dir}/<class>/<image>.jpg)${hint}`,
    );
  }
  const files: FileSample[] = [];
  classes.forEach((name, label) => {
    const images = imagesUnder(path.join(dir, name));
    if (images.length === 0)
      throw new RegroupError(
        'bad-data',
        `class folder '${path.join(dir, name)}' holds no .jpg/.jpeg/.png images; add some or remove the folder`,
      );
    for (const file of images) files.push({ path: file, label });
  });
  return fileDataset(dir, files, classes, options);
}

/**
 * A flat folder labelled by a CSV of `file,label` rows (header optional). Labels are
 * integers, or class names; with names, the class index is the name's position in the
 * sorted list of distinct names (as ImageFolder would number them). A row naming a file
 * that does not exist is an error naming the CSV line.
 */
export async function labeledFolder(dir: string, csvFile: string, options: DatasetOptions = {}): Promise<FileDataset> {
  requireDirectory(dir, 'image folder');
  let text: string;
  try {
    text = fs.readFileSync(csvFile, 'utf8');
  } catch (err) {
    throw new RegroupError(
      'io',
      `cannot read label CSV '${csvFile}' (${(err as NodeJS.ErrnoException).code ?? String(err)}); check the path`,
      { cause: err },
    );
  }
  const rows = parseCsv(text, csvFile);
  if (rows.length > 0 && isHeader(rows[0]!, dir)) rows.shift();
  if (rows.length === 0)
    throw new RegroupError('bad-data', `label CSV '${csvFile}' has no rows; write one 'file,label' line per image`);
  for (const row of rows) {
    const file = path.resolve(dir, row.file);
    if (!fs.existsSync(file))
      throw new RegroupError(
        'bad-data',
        `${csvFile}:${row.line}: file '${row.file}' does not exist in ${dir}; fix the row or add the image`,
      );
  }
  const numeric = rows.every((r) => /^[+-]?\d+$/.test(r.label));
  const classes = numeric ? undefined : [...new Set(rows.map((r) => r.label))].sort(compareNames);
  const classIndex = new Map(classes?.map((name, index) => [name, index]));
  const files = rows.map((r) => ({
    path: path.resolve(dir, r.file),
    label: numeric ? Number(r.label) : classIndex.get(r.label)!,
  }));
  return fileDataset(`${dir} (labels ${csvFile})`, files, classes, options);
}

interface CsvRow {
  file: string;
  label: string;
  line: number;
}

/** Two columns, optional double quotes (`""` escapes a quote), blank lines ignored. */
function parseCsv(text: string, csvFile: string): CsvRow[] {
  const rows: CsvRow[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === '') return;
    const fields = splitCsvLine(raw).map((f) => f.trim());
    if (fields.length < 2 || fields[0] === '' || fields[1] === '') {
      throw new RegroupError('bad-data', `${csvFile}:${i + 1}: expected 'file,label', got '${raw}'`);
    }
    rows.push({ file: fields[0]!, label: fields[1]!, line: i + 1 });
  });
  return rows;
}

function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted && ch === '"' && line[i + 1] === '"') {
      field += '"';
      i++;
    } else if (ch === '"') quoted = !quoted;
    else if (ch === ',' && !quoted) {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  fields.push(field);
  return fields;
}

/** A first row is a header when it names a column (file/filename/image/path/name/id) rather than an existing file. */
function isHeader(row: CsvRow, dir: string): boolean {
  return (
    /^(file|filename|file_name|image|image_id|path|name|id)$/i.test(row.file) &&
    !fs.existsSync(path.resolve(dir, row.file))
  );
}

/**
 * IDX images (IDX3 [count, rows, cols], gray) with IDX1 labels; each file optionally gzipped.
 * `labelsPath` undefined: the `…-labels-idx1-ubyte[.gz]` beside the images file (an error
 * when there is none); null: unlabelled, every label −1 (enough for calibration).
 */
export async function idx(imagesPath: string, labelsPath?: string | null): Promise<Dataset> {
  const labelsFile = labelsPath === undefined ? findLabels(imagesPath) : labelsPath;
  const images = await readIdx(imagesPath, 3);
  const [count, rows, cols] = images.dims as [number, number, number];
  if (labelsFile === null)
    return memoryDataset(
      `${imagesPath} (unlabelled)`,
      { width: cols, height: rows, channels: 1 },
      images.data,
      new Int32Array(count).fill(-1),
      undefined,
      imagesPath,
    );
  const labels = await readIdx(labelsFile, 1);
  if (labels.dims[0] !== count) {
    throw new RegroupError(
      'bad-data',
      `${labelsFile}: ${labels.dims[0]} labels for the ${count} images of ${imagesPath}; the two files do not belong together`,
    );
  }
  const classCount = labels.data.reduce((max, label) => Math.max(max, label + 1), 0);
  const classes = Array.from({ length: classCount }, (_, k) => String(k));
  return memoryDataset(
    imagesPath,
    { width: cols, height: rows, channels: 1 },
    images.data,
    labels.data,
    classes,
    imagesPath,
  );
}

function findLabels(imagesPath: string): string {
  const found = labelsBeside(imagesPath);
  if (!found)
    throw new RegroupError(
      'bad-data',
      `${imagesPath}: no matching *-labels-idx1-ubyte[.gz] file beside it; pass the labels path (or null for unlabelled images)`,
    );
  return found;
}

const SPLITS: readonly EmbeddedSplit[] = ['train', 'test', 'all'];

/**
 * Open a dataset from a CLI spec:
 *   `mnist[:train|:test|:all]`, `fashion-mnist[:train|:test|:all]` — embedded packages (default split: test)
 *   `idx:PATH` — PATH a folder with one *-images-idx3-ubyte[.gz] (+ labels) or the images file itself
 *   `DIR,labels.csv` — flat folder + CSV (the CSV path relative to the working folder, else to DIR)
 *   `DIR` — ImageFolder layout
 */
export async function openDataset(spec: string, options: DatasetOptions = {}): Promise<Dataset> {
  const embedded = /^(mnist|fashion-mnist)(?::(\w+))?$/.exec(spec);
  if (embedded) {
    const split = (embedded[2] ?? 'test') as EmbeddedSplit;
    if (!SPLITS.includes(split))
      throw new RegroupError(
        'usage',
        `dataset '${spec}': unknown split '${split}'; use ${embedded[1]}:train, :test or :all`,
      );
    return embedded[1] === 'mnist' ? mnist(split) : fashionMnist(split);
  }
  if (spec.startsWith('idx:')) return openIdx(spec.slice(4));
  const csv = /^(.*),([^,]+\.csv)$/i.exec(spec);
  if (csv) {
    const [, dir, csvPath] = csv as unknown as [string, string, string];
    const csvFile = fs.existsSync(csvPath) || path.isAbsolute(csvPath) ? csvPath : path.join(dir, csvPath);
    return labeledFolder(dir, csvFile, options);
  }
  if (!fs.existsSync(spec)) {
    throw new RegroupError(
      'usage',
      `dataset '${spec}' is not a folder; use mnist[:train|:test], fashion-mnist[:train|:test], idx:PATH, DIR (one sub-folder per class) or DIR,labels.csv`,
    );
  }
  return imageFolder(spec, options);
}

async function openIdx(target: string): Promise<Dataset> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(target);
  } catch {
    throw new RegroupError(
      'io',
      `idx:${target}: no such file or folder; pass a folder holding *-images-idx3-ubyte[.gz] or the images file`,
    );
  }
  if (!stat.isDirectory()) return idx(target);
  const files = idxFilesIn(target);
  if (!files.labels)
    throw new RegroupError(
      'bad-data',
      `${files.images}: no matching *-labels-idx1-ubyte[.gz] file beside it in ${target}`,
    );
  return idx(files.images, files.labels);
}
