using System.Xml.Linq;

namespace Srlm.Tests.Tasks;

/// <summary>The checkers build seed data and evaluate; the services must judge with the model alone.</summary>
public class ServiceIndependenceTests
{
    private static readonly string[] ServiceLibraries = ["Srlm.Generator", "Srlm.Judge", "Srlm.PairBuilder", "Srlm.Trainer"];

    [Fact]
    public void Service_assemblies_do_not_reference_the_task_checkers()
    {
        foreach (var name in ServiceLibraries)
        {
            var asm = Assembly.Load(new AssemblyName(name));
            var refs = Closure(asm).Select(a => a.Name).ToList();
            Assert.DoesNotContain("Srlm.Tasks", refs);
        }
    }

    [Fact]
    public void Service_projects_do_not_reference_the_task_project_even_transitively()
    {
        var root = RepoRoot();
        foreach (var name in ServiceLibraries)
        {
            var csproj = Directory.GetFiles(Path.Combine(root, "services"), name + ".csproj", SearchOption.AllDirectories).Single();
            var reached = ProjectClosure(csproj);
            Assert.DoesNotContain(reached, p => Path.GetFileName(p) == "Srlm.Tasks.csproj");
        }
    }

    [Fact]
    public void The_task_project_depends_on_no_other_project()
    {
        var tasks = Path.Combine(RepoRoot(), "src", "Srlm.Tasks", "Srlm.Tasks.csproj");
        Assert.Equal([Path.GetFullPath(tasks)], ProjectClosure(tasks));
    }

    private static IEnumerable<AssemblyName> Closure(Assembly root)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<AssemblyName>(root.GetReferencedAssemblies());
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            if (!seen.Add(n.Name!)) continue;
            yield return n;
            if (!n.Name!.StartsWith("Srlm.", StringComparison.Ordinal)) continue;
            foreach (var r in Assembly.Load(n).GetReferencedAssemblies()) stack.Push(r);
        }
    }

    internal static List<string> ProjectClosure(string csproj)
    {
        var seen = new List<string>();
        var stack = new Stack<string>([Path.GetFullPath(csproj)]);
        while (stack.Count > 0)
        {
            var p = stack.Pop();
            if (seen.Contains(p)) continue;
            seen.Add(p);
            foreach (var r in XDocument.Load(p).Descendants("ProjectReference"))
                stack.Push(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(p)!, r.Attribute("Include")!.Value.Replace('\\', '/'))));
        }
        return seen;
    }

    internal static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Pipeline.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("Pipeline.sln not found above " + AppContext.BaseDirectory);
    }
}
