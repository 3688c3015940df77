import Foundation

/// The rule for every file a command writes: never destroy good data. An output that is one of
/// the command's inputs (the same file or folder, however it is spelled: links and `..` are
/// resolved, hard links compared by device and inode), or a folder inside an input folder, is
/// refused; an output that exists already is refused unless the user passed `--force`.
public enum OutputSafety {
    /// Checks `output` (given with `flag`, e.g. `--out`) against `inputs` before any work starts.
    public static func check<Failure: UserFacingError>(_ output: String, flag: String, inputs: [String], force: Bool,
                                                      _ failure: Failure.Type) throws {
        let target = resolved(output)
        for input in inputs {
            let source = resolved(input)
            if target == source || sameFile(output, input) {
                throw Failure("\(flag) \(output) is the input \(input); write the output somewhere else (the input would be destroyed)")
            }
            if isFolder(input) && target.hasPrefix(source + "/") {
                throw Failure("\(flag) \(output) lies inside the input folder \(input); choose a folder outside it")
            }
        }
        if !force && exists(output) && !isEmptyFolder(output) {
            throw Failure("\(flag) \(output) already exists; pass --force to replace it, or choose another name")
        }
    }

    /// `path` made absolute, with `.`, `..` and symbolic links resolved as far as it exists.
    static func resolved(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var url = URL(fileURLWithPath: absolute).standardizedFileURL
        // Resolve links in the longest existing prefix, keep the rest as written.
        var tail: [String] = []
        while !FileManager.default.fileExists(atPath: url.path) && url.path != "/" {
            tail.insert(url.lastPathComponent, at: 0)
            url.deleteLastPathComponent()
        }
        var base = url.resolvingSymlinksInPath().path
        for part in tail { base += (base.hasSuffix("/") ? "" : "/") + part }
        return base
    }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func isFolder(_ path: String) -> Bool {
        var folder: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &folder) && folder.boolValue
    }

    static func isEmptyFolder(_ path: String) -> Bool {
        isFolder(path) && ((try? FileManager.default.contentsOfDirectory(atPath: path))?.isEmpty ?? false)
    }

    /// Whether two existing paths are the same file (hard links included).
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var first = stat(), second = stat()
        guard stat(a, &first) == 0, stat(b, &second) == 0 else { return false }
        return first.st_dev == second.st_dev && first.st_ino == second.st_ino
    }
}

extension OutputSafety {
    /// Refuses two outputs of one command that name the same file or folder (given as flag and
    /// path; nil paths are skipped): the second would overwrite the first.
    public static func checkDistinct<Failure: UserFacingError>(_ outputs: [(flag: String, path: String?)], _ failure: Failure.Type) throws {
        let given = outputs.compactMap { output in output.path.map { (flag: output.flag, path: $0, resolved: resolved($0)) } }
        for (i, first) in given.enumerated() {
            for second in given[(i + 1)...] where first.resolved == second.resolved {
                throw Failure("\(second.flag) \(second.path) is the same as \(first.flag) \(first.path); give each output its own name")
            }
        }
    }
}
