// A line diff, as `corral diff` prints one: what a write would change, from the
// object as it is to the object the server answers a dry run with.

/** One line of a diff: kept, taken away or added. */
export interface DiffLine {
  op: " " | "-" | "+";
  text: string;
}

/** Lines in common over the longest common subsequence; fine for objects of hundreds of lines. */
export function diffLines(before: string, after: string): DiffLine[] {
  const a = before === "" ? [] : before.replace(/\n$/, "").split("\n");
  const b = after === "" ? [] : after.replace(/\n$/, "").split("\n");
  const n = a.length;
  const m = b.length;
  // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: " ", text: a[i]! });
      i++;
      j++;
    } else if (lcs[i + 1]![j]! >= lcs[i]![j + 1]!) {
      out.push({ op: "-", text: a[i++]! });
    } else {
      out.push({ op: "+", text: b[j++]! });
    }
  }
  while (i < n) out.push({ op: "-", text: a[i++]! });
  while (j < m) out.push({ op: "+", text: b[j++]! });
  return out;
}

/** The fields every write changes by itself, left out of a preview's comparison. */
export function comparable(o: any): any {
  if (!o || typeof o !== "object") return o;
  const c = structuredClone(o);
  if (c.metadata) {
    delete c.metadata.resourceVersion;
    delete c.metadata.managedFields;
    delete c.metadata.generation;
    delete c.metadata.creationTimestamp;
    delete c.metadata.uid;
  }
  return c;
}
