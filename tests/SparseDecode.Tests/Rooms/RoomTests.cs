using Mono.Cecil;
using Mono.Cecil.Cil;

namespace SparseDecode.Tests.Rooms;

/// <summary>The rooms of src/: each folder is one namespace, and the namespaces depend on each other one way only.
/// Dependencies are read from the compiled assemblies (every type a type's signatures, fields, attributes and
/// method bodies name), so a using directive that is not needed adds nothing and a fully qualified name is not
/// missed.</summary>
public class RoomTests
{
    private static readonly string[] Assemblies =
    [
        "SparseDecode", "SparseDecode.Cuda", "SparseDecode.Evaluation", "SparseDecode.Server", "SparseDecode.Diagnostics",
        "SparseDecode.Cli",
    ];

    private static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "SparseDecode.slnx"))) return d.FullName;
        throw new DirectoryNotFoundException($"No SparseDecode.slnx above {AppContext.BaseDirectory}.");
    }

    [Fact]
    public void EverySourceFileIsInTheNamespaceOfItsFolder()
    {
        string src = Path.Combine(RepositoryRoot(), "src");
        var wrong = new List<string>();
        foreach (string file in Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(src, file);
            if (relative.Split(Path.DirectorySeparatorChar).Any(p => p is "obj" or "bin")) continue;
            string expected = Path.GetDirectoryName(relative)!.Replace(Path.DirectorySeparatorChar, '.');
            string? line = File.ReadLines(file).FirstOrDefault(l => l.StartsWith("namespace ", StringComparison.Ordinal));
            string actual = line is null ? "" : line["namespace ".Length..].TrimEnd(';', ' ');
            if (actual != expected) wrong.Add($"{relative}: namespace {actual}, folder {expected}");
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    [Fact]
    public void NoNamespaceDependsOnItselfThroughAnother()
    {
        var edges = Dependencies();
        var cycles = StronglyConnected(edges).Where(c => c.Count > 1).ToList();
        var text = cycles.Select(c => string.Join(" ⇄ ", c) + ":\n" + string.Join("\n",
            from a in c from b in c where edges.TryGetValue(a, out var to) && to.ContainsKey(b)
            select $"  {a} → {b} ({string.Join(", ", edges[a][b].Order().Take(6))})"));
        Assert.True(cycles.Count == 0, string.Join("\n", text));
    }

    [Fact]
    public void TheCoreNamesNoBackendAndNoPlotting()
    {
        var core = AssemblyDefinition.ReadAssembly(Path.Combine(AppContext.BaseDirectory, "SparseDecode.dll"));
        var names = core.MainModule.AssemblyReferences.Select(r => r.Name).ToList();
        Assert.DoesNotContain(names, n => n.StartsWith("SparseDecode", StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n.StartsWith("ScottPlot", StringComparison.Ordinal));
        // the one backend the core holds is the CPU, which every other room may use but which uses no room above it
        var edges = Dependencies();
        Assert.False(edges.TryGetValue("SparseDecode.Engine", out var engine) && engine.ContainsKey("SparseDecode.Cpu"),
            "the engine contract names the CPU backend");
        Assert.False(edges.TryGetValue("SparseDecode.Selection", out var selection) && selection.ContainsKey("SparseDecode.Cpu"),
            "the methods name the CPU backend");
    }

    /// <summary>namespace → namespace it uses → the types it uses there.</summary>
    private static Dictionary<string, Dictionary<string, HashSet<string>>> Dependencies()
    {
        var edges = new Dictionary<string, Dictionary<string, HashSet<string>>>();
        foreach (string name in Assemblies)
        {
            using var assembly = AssemblyDefinition.ReadAssembly(Path.Combine(AppContext.BaseDirectory, name + ".dll"));
            foreach (var type in assembly.MainModule.GetTypes())
            {
                string from = NamespaceOf(type);
                if (!from.StartsWith("SparseDecode", StringComparison.Ordinal)) continue;
                foreach (var used in Used(type))
                {
                    string to = NamespaceOf(used);
                    if (to == from || !to.StartsWith("SparseDecode", StringComparison.Ordinal)) continue;
                    if (!edges.TryGetValue(from, out var byTarget)) edges[from] = byTarget = [];
                    if (!byTarget.TryGetValue(to, out var types)) byTarget[to] = types = [];
                    types.Add(Outermost(used).Name);
                }
            }
        }
        return edges;
    }

    private static TypeReference Outermost(TypeReference t)
    {
        while (t.DeclaringType != null) t = t.DeclaringType;
        return t;
    }

    private static string NamespaceOf(TypeReference t) => Outermost(t).Namespace;

    private static IEnumerable<TypeReference> Used(TypeDefinition type)
    {
        var found = new List<TypeReference>();
        void Add(TypeReference? t)
        {
            while (t is TypeSpecification spec)
            {
                if (spec is GenericInstanceType g) foreach (var a in g.GenericArguments) Add(a);
                t = spec.ElementType;
            }
            if (t is not null and not GenericParameter) found.Add(t);
        }
        void Attributes(ICustomAttributeProvider p)
        {
            foreach (var a in p.CustomAttributes) Add(a.AttributeType);
        }
        Add(type.BaseType);
        foreach (var i in type.Interfaces) Add(i.InterfaceType);
        Attributes(type);
        foreach (var f in type.Fields) { Add(f.FieldType); Attributes(f); }
        foreach (var p in type.Properties) { Add(p.PropertyType); Attributes(p); }
        foreach (var m in type.Methods)
        {
            Add(m.ReturnType);
            Attributes(m);
            foreach (var p in m.Parameters) Add(p.ParameterType);
            if (!m.HasBody) continue;
            foreach (var v in m.Body.Variables) Add(v.VariableType);
            foreach (var instruction in m.Body.Instructions)
                switch (instruction.Operand)
                {
                    case TypeReference t: Add(t); break;
                    case MethodReference mr:
                        Add(mr.DeclaringType);
                        Add(mr.ReturnType);
                        foreach (var p in mr.Parameters) Add(p.ParameterType);
                        if (mr is GenericInstanceMethod gm) foreach (var a in gm.GenericArguments) Add(a);
                        break;
                    case FieldReference fr: Add(fr.DeclaringType); Add(fr.FieldType); break;
                }
        }
        return found;
    }

    private static List<List<string>> StronglyConnected(Dictionary<string, Dictionary<string, HashSet<string>>> edges)
    {
        var nodes = edges.Keys.Concat(edges.Values.SelectMany(v => v.Keys)).Distinct().Order().ToList();
        var index = new Dictionary<string, int>();
        var low = new Dictionary<string, int>();
        var stack = new Stack<string>();
        var onStack = new HashSet<string>();
        var result = new List<List<string>>();
        void Visit(string v)
        {
            index[v] = low[v] = index.Count;
            stack.Push(v);
            onStack.Add(v);
            foreach (string w in edges.TryGetValue(v, out var to) ? to.Keys.Order() : Enumerable.Empty<string>())
            {
                if (!index.ContainsKey(w)) { Visit(w); low[v] = Math.Min(low[v], low[w]); }
                else if (onStack.Contains(w)) low[v] = Math.Min(low[v], index[w]);
            }
            if (low[v] != index[v]) return;
            var component = new List<string>();
            string x;
            do { x = stack.Pop(); onStack.Remove(x); component.Add(x); } while (x != v);
            result.Add(component);
        }
        foreach (string n in nodes) if (!index.ContainsKey(n)) Visit(n);
        return result;
    }
}
