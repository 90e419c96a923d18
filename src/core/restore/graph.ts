/**
 * Orders items so every item comes after what it depends on: feature layers before the maps that
 * use them, maps before the apps, forms after their services. Items that depend on each other
 * (a cycle) share one level; the references between them are written in a last pass, once every
 * new id is known.
 */
export function levelsOf(nodes: readonly string[], dependsOn: ReadonlyMap<string, readonly string[]>) {
  const known = new Set(nodes);
  const edges = new Map<string, string[]>();
  for (const node of nodes) {
    edges.set(
      node,
      [...new Set(dependsOn.get(node) ?? [])].filter((d) => d !== node && known.has(d)),
    );
  }
  const component = stronglyConnected(nodes, edges);
  // Level of a component: 0 without dependencies, else one more than its deepest dependency.
  const componentDeps = new Map<number, Set<number>>();
  for (const node of nodes) {
    const c = component.get(node) as number;
    const set = componentDeps.get(c) ?? new Set<number>();
    for (const dep of edges.get(node) ?? []) {
      const d = component.get(dep) as number;
      if (d !== c) set.add(d);
    }
    componentDeps.set(c, set);
  }
  const levelOfComponent = new Map<number, number>();
  const resolve = (start: number): number => {
    // Iterative depth-first walk over the acyclic component graph.
    const stack: Array<{ c: number; deps: number[]; i: number; level: number }> = [];
    const push = (c: number) => stack.push({ c, deps: [...(componentDeps.get(c) ?? [])], i: 0, level: 0 });
    push(start);
    let last = 0;
    while (stack.length > 0) {
      const frame = stack[stack.length - 1] as (typeof stack)[number];
      if (frame.i < frame.deps.length) {
        const dep = frame.deps[frame.i++] as number;
        const depLevel = levelOfComponent.get(dep);
        if (depLevel !== undefined) frame.level = Math.max(frame.level, depLevel + 1);
        else push(dep);
        continue;
      }
      levelOfComponent.set(frame.c, frame.level);
      last = frame.level;
      stack.pop();
      const parent = stack[stack.length - 1];
      if (parent) parent.level = Math.max(parent.level, frame.level + 1);
    }
    return last;
  };
  const level = new Map<string, number>();
  for (const node of nodes) {
    const c = component.get(node) as number;
    level.set(node, levelOfComponent.get(c) ?? resolve(c));
  }
  const cyclic = new Set<string>();
  const sizes = new Map<number, number>();
  for (const node of nodes) {
    const c = component.get(node) as number;
    sizes.set(c, (sizes.get(c) ?? 0) + 1);
  }
  for (const node of nodes) if ((sizes.get(component.get(node) as number) ?? 0) > 1) cyclic.add(node);
  return { level, edges, cyclic };
}

/** Tarjan's strongly connected components, iteratively (no recursion limit on deep chains). */
function stronglyConnected(
  nodes: readonly string[],
  edges: ReadonlyMap<string, readonly string[]>,
): Map<string, number> {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const component = new Map<string, number>();
  let counter = 0;
  let components = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: Array<{ node: string; i: number }> = [{ node: root, i: 0 }];
    index.set(root, counter);
    low.set(root, counter);
    counter++;
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const frame = work[work.length - 1] as { node: string; i: number };
      const next = edges.get(frame.node) ?? [];
      if (frame.i < next.length) {
        const dep = next[frame.i++] as string;
        if (!index.has(dep)) {
          index.set(dep, counter);
          low.set(dep, counter);
          counter++;
          stack.push(dep);
          onStack.add(dep);
          work.push({ node: dep, i: 0 });
        } else if (onStack.has(dep)) {
          low.set(frame.node, Math.min(low.get(frame.node) as number, index.get(dep) as number));
        }
        continue;
      }
      if (low.get(frame.node) === index.get(frame.node)) {
        for (;;) {
          const member = stack.pop() as string;
          onStack.delete(member);
          component.set(member, components);
          if (member === frame.node) break;
        }
        components++;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent)
        low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(frame.node) as number));
    }
  }
  return component;
}
